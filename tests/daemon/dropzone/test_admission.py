"""Admission before login, in-process: the pre-login pool under pressure, the failure memory
of the ban list, and the order of password checks (the daemon's tests drive the same code
with real clients in test_hostile_peers.py)."""

import threading
import time

from daemon.config.settings import SecuritySettings
from daemon.dropzone.gatekeeper import PRUNE_FROM, BanList, Connections, Gatekeeper, LoginRefused, RateLimitedLog
from daemon.dropzone.passwords import TurnSlots, Verifier


def settings(**overrides) -> SecuritySettings:
    values = dict(
        max_failures=5, window=600.0, ban=1800.0, login_grace_time=60.0, max_unauthenticated=6,
        max_unauthenticated_per_address=3, max_sessions_per_address=20, max_auth_attempts=3,
        max_handles_per_session=256, max_channels_per_connection=10,
    )  # fmt: skip
    values.update(overrides)
    return SecuritySettings(**values)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted(connections: Connections, address: str, hung_up: list):
    ticket = connections.admit(address, "sftp")
    if ticket is not None:
        ticket.close_hook = lambda reason, ticket=ticket: hung_up.append((ticket.address, reason))
    return ticket


def test_a_full_pool_drops_the_oldest_connection_of_the_address_holding_most():
    bans = BanList(settings())
    connections = Connections(settings(), bans, RateLimitedLog())
    hung_up = []
    try:
        crowd = [admitted(connections, "10.0.0.1", hung_up) for _ in range(3)]
        crowd += [admitted(connections, "10.0.0.2", hung_up) for _ in range(2)]
        crowd += [admitted(connections, "10.0.0.3", hung_up)]
        assert connections.counts()["unauthenticated"] == 6
        partner = admitted(connections, "10.0.0.9", hung_up)
        assert partner is not None
        assert hung_up == [("10.0.0.1", "pre-login-pool-full")]
        assert crowd[0].closed and not crowd[1].closed, "the oldest of the heaviest address goes first"
        assert connections.counts()["unauthenticated"] == 6
        assert bans.recent_failures("10.0.0.1") == 1 and bans.recent_failures("10.0.0.9") == 0
        crowd[0].close()  # the dropped connection's own thread closes it later: counted once only
        assert connections.counts()["unauthenticated"] == 6
    finally:
        connections.stop()


def test_a_newcomer_holding_as_many_as_anyone_is_refused_and_counted():
    bans = BanList(settings())
    connections = Connections(settings(max_unauthenticated=4, max_unauthenticated_per_address=3), bans,
                              RateLimitedLog())  # fmt: skip
    hung_up = []
    try:
        for address in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"):
            admitted(connections, address, hung_up)
        assert admitted(connections, "10.0.0.2", hung_up) is None, "10.0.0.2 holds as many as anyone"
        assert bans.recent_failures("10.0.0.2") == 1
        assert hung_up == []
        assert admitted(connections, "10.0.0.3", hung_up) is not None
        assert len(hung_up) == 1
    finally:
        connections.stop()


def test_a_ticket_whose_socket_is_gone_is_given_back_once():
    bans = BanList(settings())
    connections = Connections(settings(login_grace_time=0.1), bans, RateLimitedLog())
    try:
        ticket = connections.admit("10.0.0.1", "ftp")
        calls = []

        def broken_hook(reason):
            calls.append(reason)
            raise OSError(9, "Bad file descriptor")

        ticket.close_hook = broken_hook
        deadline = time.monotonic() + 5
        while connections.counts()["unauthenticated"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.2)  # the grace-time sweep runs twice a second; a leaked ticket would be retried
        assert connections.counts()["unauthenticated"] == 0
        assert calls == ["login-grace-time"]
    finally:
        connections.stop()


def test_failures_of_scanned_addresses_are_forgotten_once_out_of_the_window():
    clock = FakeClock()
    bans = BanList(settings(window=60.0, max_failures=1000), clock=clock)
    for n in range(50_000):
        clock.now += 0.01
        bans.record_failure(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    # 60 s of failures at 100 a second is 6,000 addresses in the window; the rest is forgotten.
    assert bans.remembered() <= 2 * 6_000 + PRUNE_FROM
    clock.now += 61
    bans.record_failure("10.255.255.255")
    for n in range(PRUNE_FROM * 2):
        bans.record_failure(f"11.0.{n >> 8 & 255}.{n & 255}")
    assert bans.recent_failures("10.0.0.1") == 0
    assert bans.remembered() <= PRUNE_FROM * 2 + 1


def test_password_checks_serve_addresses_without_failures_first():
    slots = TurnSlots(1)
    assert slots.acquire(1)
    order = []

    def wait(name, priority):
        assert slots.acquire(5, priority)
        order.append(name)
        slots.release()

    threads = []
    for name, priority in (("guesser-a", 3), ("guesser-b", 1), ("partner", 0), ("guesser-c", 1)):
        threads.append(threading.Thread(target=wait, args=(name, priority)))
        threads[-1].start()
        time.sleep(0.05)
    slots.release()
    for thread in threads:
        thread.join(5)
    assert order == ["partner", "guesser-b", "guesser-c", "guesser-a"]


def test_a_check_refused_as_busy_counts_toward_the_ban():
    bans = BanList(settings(max_failures=2))
    verifier = Verifier(slots=1, timeout=0.05)
    gatekeeper = Gatekeeper({}, bans, verifier)
    verifier._slots.acquire(1)  # every slot taken: the next check cannot get a turn
    for _ in range(2):
        try:
            gatekeeper.check_password("nobody", "guess", "10.0.0.5")
        except LoginRefused as refused:
            assert str(refused).startswith("busy")
            gatekeeper.refused("sftp", "nobody", "10.0.0.5", refused, "password")
    assert bans.is_banned("10.0.0.5")
