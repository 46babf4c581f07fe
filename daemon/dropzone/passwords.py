"""Partner passwords: argon2id hashes (argon2-cffi), made by `dropd passwd`, checked at login.

New hashes use RFC 9106's second recommended option (argon2id, 3 passes, 64 MiB, 4 lanes:
argon2-cffi's `RFC_9106_LOW_MEMORY` profile), strong and still cheap enough to verify at
login. Verification accepts any argon2 hash, so hashes made with other parameters keep
working.

Each verification holds 64 MiB for about 0.1 s. `Verifier` bounds how many run at once
(`VERIFY_SLOTS`), so a crowd of wrong passwords cannot spend the daemon's memory, and lets
each source address have one verification in flight or waiting at a time, so one address's
crowd queues behind itself. Waiters are served by the number of recent failures of their
address, then in arrival order: an address that has only guessed wrong waits behind one
that has not, so a partner's login is checked next even while a crowd of guessers from many
addresses fills the queue. An attempt that cannot get a turn within `QUEUE_TIMEOUT` is
refused as busy.
"""

import bisect
import functools
import itertools
import threading
from collections.abc import Iterable
from contextlib import contextmanager

import argon2

_HASHER = argon2.PasswordHasher.from_parameters(argon2.profiles.RFC_9106_LOW_MEMORY)
VERIFY_SLOTS = 2
QUEUE_TIMEOUT = 10.0


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


class TurnSlots:
    """A counting semaphore that serves its waiters by priority (lowest first), then in
    arrival order."""

    def __init__(self, slots: int):
        self._free = slots
        self._waiting: list[tuple[int, int]] = []
        """(priority, arrival number) of each waiter, in the order they are served."""
        self._arrivals = itertools.count()
        self._changed = threading.Condition()

    def acquire(self, timeout: float, priority: int = 0) -> bool:
        me = (priority, next(self._arrivals))
        with self._changed:
            bisect.insort(self._waiting, me)
            if not self._changed.wait_for(lambda: self._free > 0 and self._waiting[0] == me, timeout):
                self._waiting.remove(me)
                self._changed.notify_all()
                return False
            self._waiting.pop(0)
            self._free -= 1
            self._changed.notify_all()
            return True

    def release(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()


class Verifier:
    def __init__(self, slots: int = VERIFY_SLOTS, timeout: float = QUEUE_TIMEOUT):
        self._slots = TurnSlots(slots)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._per_address: dict[str, threading.Lock] = {}
        self._users: dict[str, int] = {}

    def matches(self, hashes: Iterable[str], password: str, address: str, priority: int = 0) -> bool:
        """True if `password` matches one of `hashes` (the dummy hash when there are none).
        `priority`: the address's recent failures; fewer go first."""
        hashes = tuple(hashes) or (dummy_hash(),)
        with self._address_turn(address):
            if not self._slots.acquire(timeout=self._timeout, priority=priority):
                raise VerifierBusy("too many password checks are waiting")
            try:
                return any(verify_password(one, password) for one in hashes)
            finally:
                self._slots.release()

    @contextmanager
    def _address_turn(self, address: str):
        """One verification per address at a time; the lock is dropped when nobody uses it."""
        with self._lock:
            lock = self._per_address.setdefault(address, threading.Lock())
            self._users[address] = self._users.get(address, 0) + 1
        try:
            if not lock.acquire(timeout=self._timeout):
                raise VerifierBusy("too many password checks from this address are waiting")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._lock:
                self._users[address] -= 1
                if not self._users[address]:
                    del self._users[address]
                    del self._per_address[address]
