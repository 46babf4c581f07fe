"""Who may connect and log in: accounts, allow lists, bans, and limits before login.

Both servers ask the same `Gatekeeper`, so a partner's password, keys and allow list, the
failures of an address and its connection counts mean the same thing over SFTP and FTPS.

- Failures are counted per source address over `window`, whatever account they were for and
  whatever other accounts logged in meanwhile; `max_failures` of them ban the address for
  `ban`. The ban is checked at connect and at every authentication attempt, and when it
  starts the servers close the address's connections that have not logged in.
- Every user name gets the same answer: the same method list, and a password check of the
  same cost (a dummy hash for unknown, disabled and key-only accounts).
- Before login a connection is held to `login_grace_time`, and there are at most
  `max_unauthenticated` of them (`max_unauthenticated_per_address` per address); an address
  has at most `max_sessions_per_address` connections in all. Refusals are logged once per
  address and reason per minute.

Replacing the partner table on reload keeps failures, bans and connections. With `shared`
(several instances on one PostgreSQL store) failures and bans are counted in the store, so
guesses spread over the instances meet one budget.
"""

import functools
import threading
import time
from collections import deque
from dataclasses import dataclass

import paramiko
import structlog

from daemon.clock import utc_stamp
from daemon.config.partners import Partner
from daemon.config.settings import SecuritySettings
from daemon.dropzone.passwords import CheckAbandoned, Verifier, VerifierBusy

log = structlog.get_logger("dropd.gatekeeper")

LOG_EVERY = 60.0
PRUNE_FROM = 1024
SHARED_RETRY = 30.0
"""Seconds the shared bans are left alone after the store failed to answer."""
RECENT_LOGINS = 20
"""Logins and failed attempts kept per partner for the web console."""


class LoginRefused(Exception):
    """A login was refused; the message is for logs (never sent to the client)."""


class RateLimitedLog:
    """One log line per (address, reason) per minute; the next one says how many were skipped."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._last: dict[tuple, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: str, remote: str, reason: str, **fields) -> None:
        now = self._clock()
        key = (event, remote, reason)
        with self._lock:
            last, skipped = self._last.get(key, (None, 0))
            if last is not None and now - last < LOG_EVERY:
                self._last[key] = (last, skipped + 1)
                return
            self._last[key] = (now, 0)
            if len(self._last) > 10_000:
                self._last = {k: v for k, v in self._last.items() if now - v[0] < LOG_EVERY}
        log.info(event, remote=remote, reason=reason, skipped=skipped, **fields)


@dataclass
class Ban:
    address: str
    until: float
    """Wall-clock time (epoch seconds) when the ban ends."""


class BanList:
    """Failed logins per source address within a window; an address over the limit is banned."""

    def __init__(self, settings: SecuritySettings, clock=time.monotonic):
        self.settings = settings
        self._clock = clock
        self._failures: dict[str, deque] = {}
        self._banned_until: dict[str, float] = {}
        self._logged_in_at: dict[str, float] = {}
        """The last successful login from each address (within `window`): its password checks go first."""
        self._prune_at = PRUNE_FROM
        """Addresses remembered (failures and bans) at which expired ones are forgotten next."""
        self._listeners = []
        self._lock = threading.Lock()
        self.shared = None
        """A `SharedBans`, when failures and bans are shared with other instances."""
        self._shared_down_until = 0.0

    def _shared(self, operation: str, *args, default):
        """`operation` on the shared bans; `default` while the store cannot be reached. After a
        failure the store is left alone for SHARED_RETRY seconds: every connect and attempt
        asks, and each would wait for the store again (logins must not wait on an outage)."""
        if time.monotonic() < self._shared_down_until:
            return default
        try:
            return getattr(self.shared, operation)(*args)
        except Exception as exc:  # the store is down: this instance's own count and bans still apply
            self._shared_down_until = time.monotonic() + SHARED_RETRY
            log.warning("bans.store_unavailable", operation=operation, error=str(exc), retry_in=SHARED_RETRY)
            return default

    def on_ban(self, listener) -> None:
        """`listener(address, sparing)` is called when an address is banned; `sparing` is the
        connection whose failure caused the ban (it replies, then closes itself)."""
        self._listeners.append(listener)

    def is_banned(self, address: str) -> bool:
        with self._lock:
            until = self._banned_until.get(address)
            if until is not None and self._clock() >= until:
                del self._banned_until[address]
                until = None
        if until is not None:
            return True
        return self.shared is not None and self._shared("banned", address, default=False)

    def recent_failures(self, address: str) -> int:
        """This instance's count of the address's failures within the window."""
        limit = self._clock() - self.settings.window
        with self._lock:
            return sum(1 for moment in self._failures.get(address, ()) if moment > limit)

    def check_priority(self, address: str) -> int:
        """Where the address's password checks queue (lowest first): -1 when it logged in within
        the window, else its count of recent failures."""
        with self._lock:
            logged_in = self._logged_in_at.get(address)
        if logged_in is not None and logged_in > self._clock() - self.settings.window:
            return -1
        return self.recent_failures(address)

    def record_success(self, address: str) -> None:
        now = self._clock()
        with self._lock:
            self._logged_in_at[address] = now
            if self._remembered() >= self._prune_at:
                self._forget_expired(now)

    def record_failure(self, address: str, sparing=None) -> bool:
        """Count one failure; return True when this failure bans the address."""
        now = self._clock()
        with self._lock:
            failures = self._failures.setdefault(address, deque())
            failures.append(now)
            while failures and failures[0] <= now - self.settings.window:
                failures.popleft()
            count = len(failures)
            if self._remembered() >= self._prune_at:
                self._forget_expired(now)
        if self.shared is not None:
            count = max(count, self._shared("failure", address, self.settings.window, default=0))
        if count < self.settings.max_failures:
            return False
        with self._lock:
            self._failures.pop(address, None)
            self._banned_until[address] = now + self.settings.ban
        if self.shared is not None:
            self._shared("ban", address, self.settings.ban, default=None)
        log.warning("address.banned", remote=address, seconds=self.settings.ban)
        for listener in list(self._listeners):
            listener(address, sparing)
        return True

    def _forget_expired(self, now: float) -> None:
        """Under the lock: drop addresses whose failures left the window and bans that ended,
        so that a scanner sweeping many addresses costs no lasting memory. The next pruning
        waits until the remembered addresses double, so the cost per failure stays constant."""
        oldest = now - self.settings.window
        self._failures = {address: times for address, times in self._failures.items() if times[-1] > oldest}
        self._banned_until = {address: until for address, until in self._banned_until.items() if until > now}
        self._logged_in_at = {address: at for address, at in self._logged_in_at.items() if at > oldest}
        self._prune_at = max(PRUNE_FROM, 2 * self._remembered())

    def _remembered(self) -> int:
        return len(self._failures) + len(self._banned_until) + len(self._logged_in_at)

    def remembered(self) -> int:
        """Addresses with failures, a ban or a recent login held in memory (tests)."""
        with self._lock:
            return self._remembered()

    def bans(self) -> list[Ban]:
        now, wall = self._clock(), time.time()
        with self._lock:
            found = {address: wall + until - now for address, until in self._banned_until.items() if until > now}
        for address, until in self._shared("bans", default=[]) if self.shared is not None else []:
            found[address] = max(until, found.get(address, 0.0))
        return [Ban(address, until) for address, until in sorted(found.items())]

    def unban(self, address: str) -> bool:
        with self._lock:
            self._failures.pop(address, None)
            found = self._banned_until.pop(address, None) is not None
        if self.shared is not None:
            found = self._shared("unban", address, default=False) or found
        if found:
            log.warning("address.unbanned", remote=address)
        return found


class ConnectionTicket:
    """One connection counted by `Connections`, from accept to close."""

    def __init__(self, connections: "Connections", address: str, protocol: str):
        self.connections = connections
        self.address = address
        self.protocol = protocol
        self.opened = time.monotonic()
        self.authenticated = False
        self.closed = False
        self.close_hook = None
        """Called (from any thread) to close the connection: a ban, or the grace time."""

    def logged_in(self) -> None:
        self.connections._logged_in(self)

    def close(self) -> None:
        self.connections._closed(self)


class Connections:
    """Connections per address, before and after login, with their limits."""

    def __init__(self, settings: SecuritySettings, bans: BanList, refusals: RateLimitedLog):
        self.settings = settings
        self._bans = bans
        self._refusals = refusals
        self._lock = threading.Lock()
        self._open: dict[str, set[ConnectionTicket]] = {}
        self._unauthenticated = 0
        bans.on_ban(self._close_unauthenticated)
        self._stop = threading.Event()
        threading.Thread(target=self._enforce_grace_time, name="login-grace", daemon=True).start()

    def admit(self, address: str, protocol: str) -> ConnectionTicket | None:
        """A ticket for a new connection, or None (refused and logged) when it may not open.

        When the pre-login pool is full, the newcomer is not simply refused (a few addresses
        holding idle connections would lock every partner out): the oldest pre-login
        connection of the address holding the most is dropped to make room, unless the
        newcomer's address holds as many itself; then the newcomer is refused. Either way the
        address that pressed on the pool has a failure counted toward its ban (the idea of
        OpenSSH's MaxStartups and PerSourcePenalties)."""
        reason = dropped = None
        with self._lock:
            tickets = self._open.get(address, set())
            waiting = sum(1 for ticket in tickets if not ticket.authenticated)
            if self._bans.is_banned(address):
                reason = "banned"
            elif len(tickets) >= self.settings.max_sessions_per_address:
                reason = "too-many-sessions"
            elif waiting >= self.settings.max_unauthenticated_per_address:
                reason = "too-many-unauthenticated-from-address"
            elif self._unauthenticated >= self.settings.max_unauthenticated:
                dropped = self._make_room(waiting)
                if dropped is None:
                    reason = "pre-login-pool-full"
            if reason is None:
                ticket = ConnectionTicket(self, address, protocol)
                self._open.setdefault(address, set()).add(ticket)
                self._unauthenticated += 1
        if dropped is not None:
            self._refusals("connection.closed", dropped.address, "pre-login-pool-full", protocol=dropped.protocol)
            _hang_up(dropped, "pre-login-pool-full")
            self._bans.record_failure(dropped.address)
        if reason is None:
            return ticket
        self._refusals("connection.refused", address, reason, protocol=protocol)
        if reason == "pre-login-pool-full":
            self._bans.record_failure(address)
        return None

    def _make_room(self, newcomer_waiting: int) -> ConnectionTicket | None:
        """Under the lock: take the oldest pre-login connection of the address holding the most
        out of the count, if that address holds more than the newcomer's; the caller hangs it up.
        Among addresses holding as many, the one with the most recent failures goes first and
        one that logged in recently last."""
        holders = {
            address: [ticket for ticket in group if not ticket.authenticated] for address, group in self._open.items()
        }
        most = max(map(len, holders.values()), default=0)
        if most <= newcomer_waiting:
            return None
        heaviest = [address for address, tickets in holders.items() if len(tickets) == most]
        address = max(heaviest, key=self._bans.check_priority)
        oldest = min(holders[address], key=lambda ticket: ticket.opened)
        self._release(oldest)
        return oldest

    def counts(self) -> dict:
        """Logged-in sessions per protocol, and connections not logged in yet."""
        with self._lock:
            tickets = [ticket for group in self._open.values() for ticket in group]
        sessions: dict[str, int] = {}
        for ticket in tickets:
            if ticket.authenticated:
                sessions[ticket.protocol] = sessions.get(ticket.protocol, 0) + 1
        return {"sessions": sessions, "unauthenticated": sum(not ticket.authenticated for ticket in tickets)}

    def _logged_in(self, ticket: ConnectionTicket) -> None:
        with self._lock:
            if not ticket.authenticated and not ticket.closed:
                ticket.authenticated = True
                self._unauthenticated -= 1

    def _closed(self, ticket: ConnectionTicket) -> None:
        with self._lock:
            self._release(ticket)

    def _release(self, ticket: ConnectionTicket) -> None:
        """Under the lock: the ticket no longer counts (once, whoever asks first)."""
        if ticket.closed:
            return
        ticket.closed = True
        if not ticket.authenticated:
            self._unauthenticated -= 1
        tickets = self._open.get(ticket.address)
        if tickets is not None:
            tickets.discard(ticket)
            if not tickets:
                del self._open[ticket.address]

    def _unauthenticated_tickets(self, address: str | None = None) -> list[ConnectionTicket]:
        with self._lock:
            groups = [self._open.get(address, set())] if address else list(self._open.values())
            return [ticket for group in groups for ticket in group if not ticket.authenticated]

    def _close_unauthenticated(self, address: str, sparing=None) -> None:
        for ticket in self._unauthenticated_tickets(address):
            if ticket is not sparing:
                _close(ticket, "banned")

    def _enforce_grace_time(self) -> None:
        while not self._stop.wait(0.5):
            limit = time.monotonic() - self.settings.login_grace_time
            for ticket in self._unauthenticated_tickets():
                if ticket.opened < limit:
                    self._refusals("connection.closed", ticket.address, "login-grace-time", protocol=ticket.protocol)
                    _close(ticket, "login-grace-time")

    def stop(self) -> None:
        self._stop.set()


def _close(ticket: ConnectionTicket, reason: str) -> None:
    """Close a connection that still counts, from outside its own thread."""
    if not ticket.closed:
        _hang_up(ticket, reason)


def _hang_up(ticket: ConnectionTicket, reason: str) -> None:
    """Close the ticket's connection. A socket that cannot be shut down is gone already: its
    slot is given back here, so that nothing retries it forever."""
    if ticket.close_hook is None:
        return
    try:
        ticket.close_hook(reason)
    except OSError as exc:
        log.info("connection.already_closed", remote=ticket.address, reason=reason, error=exc.strerror or str(exc))
        ticket.close()


class LastLogins:
    """Each partner's last successful login (when, how, from where), for `dropd status`, and
    its last RECENT_LOGINS logins and failed attempts, for the web console; kept in memory
    across reloads, so it starts empty with the daemon."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last: dict[str, dict] = {}
        self._recent: dict[str, deque] = {}

    def record(self, partner: str, protocol: str, address: str) -> None:
        entry = {"at": utc_stamp(), "protocol": protocol, "address": address}
        with self._lock:
            self._last[partner] = entry
            self._remember(partner, {**entry, "outcome": "succeeded", "reason": ""})

    def record_failure(self, partner: str, protocol: str, address: str, reason: str) -> None:
        entry = {"at": utc_stamp(), "protocol": protocol, "address": address, "outcome": "failed", "reason": reason}
        with self._lock:
            self._remember(partner, entry)

    def _remember(self, partner: str, entry: dict) -> None:
        self._recent.setdefault(partner, deque(maxlen=RECENT_LOGINS)).appendleft(entry)

    def last(self) -> dict[str, dict]:
        with self._lock:
            return dict(self._last)

    def recent(self, partner: str) -> list[dict]:
        """The partner's last logins and failed attempts, newest first."""
        with self._lock:
            return list(self._recent.get(partner, ()))


class Gatekeeper:
    METHODS = ("publickey", "password")

    def __init__(
        self, partners: dict[str, Partner], bans: BanList, verifier: Verifier, logins: LastLogins | None = None
    ):
        self.partners = partners
        self.bans = bans
        self.verifier = verifier
        self.logins = logins if logins is not None else LastLogins()

    def _partner_for(self, username: str, address: str) -> Partner:
        if self.bans.is_banned(address):
            raise LoginRefused("banned")
        partner = self.partners.get(username)
        if partner is None:
            raise LoginRefused("unknown user")
        if not partner.enabled:
            raise LoginRefused("partner is disabled")
        if not partner.allows(address):
            raise LoginRefused("address not in the partner's allow_from")
        return partner

    def check_password(self, username: str, password: str, address: str, cancelled=None) -> Partner:
        """The partner, or LoginRefused. Costs one argon2 check whatever the account.
        `cancelled()` says the client has gone, while the check waits for its turn."""
        try:
            partner = self._partner_for(username, address)
        except LoginRefused as refused:
            if str(refused) != "banned":
                self._verify((), password, address, cancelled)
            raise
        if not self._verify(partner.password_hashes, password, address, cancelled):
            raise LoginRefused(
                "wrong password" if partner.password_hashes else "no password for this partner (keys only)"
            )
        return partner

    def _verify(self, hashes, password: str, address: str, cancelled) -> bool:
        priority = functools.partial(self.bans.check_priority, address)
        try:
            return self.verifier.matches(hashes, password, address, priority, cancelled)
        except VerifierBusy as busy:
            # Counted like a wrong guess: only a crowd of guesses makes the checks wait this long.
            raise LoginRefused(f"busy: {busy}") from None
        except CheckAbandoned as abandoned:
            raise LoginRefused(f"abandoned: {abandoned}") from None

    def check_key(self, username: str, key: paramiko.PKey, address: str) -> Partner:
        partner = self._partner_for(username, address)
        if not any(key == allowed for allowed in partner.authorized_keys):
            raise LoginRefused("key not in the partner's authorized_keys")
        return partner

    def auth_methods(self, username: str) -> list[str]:
        """The same for every name: which accounts exist is never told."""
        return list(self.METHODS)

    def refused(self, protocol: str, username: str, address: str, reason, method: str, ticket=None, **fields) -> None:
        """Log a failed login and count it; `ticket` is the connection it came on."""
        log.warning(
            "login.failed",
            protocol=protocol,
            user=username,
            remote=address,
            method=method,
            reason=str(reason),
            **fields,
        )
        if username in self.partners:
            self.logins.record_failure(username, protocol, address, str(reason))
        self.bans.record_failure(address, sparing=ticket)

    def accepted(self, protocol: str, partner: Partner, address: str, method: str, **fields) -> None:
        self.bans.record_success(address)
        self.logins.record(partner.name, protocol, address)
        log.info("login.succeeded", protocol=protocol, partner=partner.name, remote=address, method=method, **fields)
