"""Admission before login, in-process: the pre-login pool under pressure, the failure memory
of the ban list, and the order of password checks (the daemon's tests drive the same code
with real clients in test_hostile_peers.py)."""

import threading
import time

from daemon.config.settings import SecuritySettings
from daemon.dropzone.gatekeeper import PRUNE_FROM, BanList, Connections, Gatekeeper, LoginRefused, RateLimitedLog
from daemon.dropzone.passwords import CheckQueue, Verifier


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


def test_among_addresses_holding_as_many_the_guesser_is_dropped_and_a_recent_login_last():
    bans = BanList(settings())
    connections = Connections(settings(max_unauthenticated=3), bans, RateLimitedLog())
    hung_up = []
    try:
        bans.record_success("10.0.0.1")
        bans.record_failure("10.0.0.3")
        for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            admitted(connections, address, hung_up)
        admitted(connections, "10.0.0.9", hung_up)
        admitted(connections, "10.0.0.8", hung_up)
        assert [address for address, _ in hung_up] == ["10.0.0.3", "10.0.0.2"]
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


def served_in_order(queue: CheckQueue, waiters, hold: str = "holder") -> list[str]:
    """Start each (name, address, priority) waiter in turn while `hold` has the only turn, then
    let go: the names in the order they got their turn."""
    assert queue.acquire(hold, 1) is None
    order = []

    def wait(name, address, priority):
        assert queue.acquire(address, 5, priority) is None
        order.append(name)
        time.sleep(0.01)
        queue.release(address)

    threads = []
    for waiter in waiters:
        threads.append(threading.Thread(target=wait, args=waiter))
        threads[-1].start()
        time.sleep(0.05)
    queue.release(hold)
    for thread in threads:
        thread.join(5)
    return order


def test_password_checks_are_served_in_arrival_order():
    waiters = [(name, f"10.0.0.{n}", 0) for n, name in enumerate("abcde")]
    assert served_in_order(CheckQueue(1), waiters) == list("abcde")


def test_password_checks_serve_recent_logins_then_addresses_with_fewer_failures_first():
    waiters = [("guesser-a", "10.0.0.1", 3), ("guesser-b", "10.0.0.2", 1), ("partner", "10.0.0.3", 0),
               ("guesser-c", "10.0.0.4", 1), ("regular", "10.0.0.5", -1)]  # fmt: skip
    assert served_in_order(CheckQueue(1), waiters) == ["regular", "partner", "guesser-b", "guesser-c", "guesser-a"]


def test_addresses_take_turns_so_a_newcomer_does_not_wait_behind_one_address_s_crowd():
    waiters = [("a1", "10.0.0.1", 0), ("a2", "10.0.0.1", 0), ("a3", "10.0.0.1", 0), ("b", "10.0.0.2", 0)]
    assert served_in_order(CheckQueue(1), waiters) == ["a1", "b", "a2", "a3"]


def test_a_waiter_s_priority_is_read_when_turns_are_given_not_when_it_queued():
    failures = {"10.0.0.1": 0}
    waiters = [("guesser", "10.0.0.1", lambda: failures["10.0.0.1"]), ("partner", "10.0.0.2", 0)]
    queue = CheckQueue(1)
    failures["10.0.0.1"] = 4  # the guesser's earlier guesses failed while it waited
    assert served_in_order(queue, waiters) == ["partner", "guesser"]


def test_one_check_per_address_at_a_time():
    queue = CheckQueue(2)
    assert queue.acquire("10.0.0.1", 1) is None
    assert queue.acquire("10.0.0.1", 0.2) == "busy", "a second check of one address waits for the first"
    assert queue.acquire("10.0.0.2", 0.2) is None
    queue.release("10.0.0.1")
    assert queue.acquire("10.0.0.1", 0.2) is None


def test_a_check_whose_client_left_leaves_the_queue():
    queue = CheckQueue(1)
    assert queue.acquire("10.0.0.1", 1) is None
    gone = threading.Event()
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(queue.acquire("10.0.0.2", 10, 0, gone.is_set)))
    waiter.start()
    time.sleep(0.2)
    gone.set()
    waiter.join(2)
    assert outcome == ["abandoned"]
    queue.release("10.0.0.1")
    assert queue.acquire("10.0.0.3", 0.2) is None, "the abandoned waiter holds nothing"


def test_a_check_refused_as_busy_counts_toward_the_ban():
    bans = BanList(settings(max_failures=2))
    verifier = Verifier(slots=1, timeout=0.05)
    gatekeeper = Gatekeeper({}, bans, verifier)
    verifier._queue.acquire("10.0.0.9", 1)  # every turn taken: the next check cannot get one
    for _ in range(2):
        try:
            gatekeeper.check_password("nobody", "guess", "10.0.0.5")
        except LoginRefused as refused:
            assert str(refused).startswith("busy")
            gatekeeper.refused("sftp", "nobody", "10.0.0.5", refused, "password")
    assert bans.is_banned("10.0.0.5")
