"""Partner passwords: argon2id hashes (argon2-cffi), made by `dropd passwd`, checked at login.

New hashes use RFC 9106's second recommended option (argon2id, 3 passes, 64 MiB, 4 lanes:
argon2-cffi's `RFC_9106_LOW_MEMORY` profile), strong and still cheap enough to verify at
login. Verification accepts any argon2 hash, so hashes made with other parameters keep
working.

Each verification holds 64 MiB for about 0.1 s. `Verifier` bounds how many run at once
(`VERIFY_SLOTS`), so a crowd of wrong passwords cannot spend the daemon's memory, and runs one
check per source address at a time, so one address's crowd queues behind itself. Waiters are
served by priority, then in arrival order: an address that logged in recently goes first, then
addresses by their count of recent failures, so a partner is checked next even while a crowd
of guessers from many addresses fills the queue. A waiter whose client has gone leaves the
queue. An attempt that cannot get a turn within `QUEUE_TIMEOUT` is refused as busy.
"""

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable

import argon2

_HASHER = argon2.PasswordHasher.from_parameters(argon2.profiles.RFC_9106_LOW_MEMORY)
VERIFY_SLOTS = 2
QUEUE_TIMEOUT = 10.0
CANCEL_POLL = 0.1
"""How often a waiting check looks whether its connection is still there."""
SERVED_MEMORY = 4096
"""Addresses whose last turn `CheckQueue` remembers before it forgets those not waiting."""


class VerifierBusy(Exception):
    """No verification turn came within the queue timeout."""


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """A hash no password matches in practice; checked for unknown and key-only accounts so
    that they cost as much as a real account's wrong password."""
    return hash_password("dropd-unknown-user")


class CheckQueue:
    """Turns for password checks: at most `slots` at once and one per address at a time.

    The next turn goes to the waiter with the lowest priority now (an address's priority
    changes while it waits: its failures keep coming in), then to the address served least
    recently (so addresses take turns and a newcomer does not wait behind everyone queued by
    one address), then in arrival order. A waiter whose connection is gone (`cancelled()`)
    leaves the queue instead of spending a turn nobody waits for."""

    def __init__(self, slots: int):
        self._free = slots
        self._waiting: list[tuple[int, str, Callable[[], int]]] = []
        """(arrival number, address, its priority now) of each waiter, in arrival order."""
        self._checking: set[str] = set()
        self._served: dict[str, int] = {}
        """The turn number at which each address was last served."""
        self._turns = itertools.count(1)
        self._arrivals = itertools.count()
        self._changed = threading.Condition()

    def acquire(self, address: str, timeout: float, priority=0, cancelled=None) -> str | None:
        """None once the turn is taken (give it back with `release`); else why not: "busy"
        (no turn within `timeout`) or "abandoned" (`cancelled()` said so while waiting).
        `priority`: a number, or a callable giving it (lower goes first)."""
        me = (next(self._arrivals), address, priority if callable(priority) else lambda: priority)
        deadline = time.monotonic() + timeout
        with self._changed:
            self._waiting.append(me)
            try:
                while self._free <= 0 or self._next() is not me:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return "busy"
                    if cancelled is not None and cancelled():
                        return "abandoned"
                    self._changed.wait(min(left, CANCEL_POLL))
                self._free -= 1
                self._checking.add(address)
                self._served[address] = next(self._turns)
                return None
            finally:
                self._waiting.remove(me)
                self._changed.notify_all()

    def _next(self):
        eligible = [waiter for waiter in self._waiting if waiter[1] not in self._checking]
        return min(eligible, key=lambda w: (w[2](), self._served.get(w[1], 0), w[0]), default=None)

    def release(self, address: str) -> None:
        with self._changed:
            self._free += 1
            self._checking.discard(address)
            if len(self._served) > SERVED_MEMORY:  # keep the addresses that still wait, forget the rest
                waiting = {waiter[1] for waiter in self._waiting}
                self._served = {a: turn for a, turn in self._served.items() if a in waiting or a in self._checking}
            self._changed.notify_all()


class CheckAbandoned(Exception):
    """The connection went away while its password check waited for a turn."""


class Verifier:
    def __init__(self, slots: int = VERIFY_SLOTS, timeout: float = QUEUE_TIMEOUT):
        self._queue = CheckQueue(slots)
        self._timeout = timeout

    def matches(self, hashes: Iterable[str], password: str, address: str, priority=0, cancelled=None) -> bool:
        """True if `password` matches one of `hashes` (the dummy hash when there are none).
        `priority`: lower goes first, a number or a callable (see `Gatekeeper`); `cancelled()`:
        True once the connection is gone. Raises VerifierBusy or CheckAbandoned when no turn is
        taken."""
        hashes = tuple(hashes) or (dummy_hash(),)
        refused = self._queue.acquire(address, self._timeout, priority, cancelled)
        if refused == "busy":
            raise VerifierBusy("too many password checks are waiting")
        if refused == "abandoned":
            raise CheckAbandoned("the client left while its password check waited for a turn")
        try:
            return any(verify_password(one, password) for one in hashes)
        finally:
            self._queue.release(address)
