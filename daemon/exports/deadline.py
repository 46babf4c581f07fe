"""A push's watchdog: every network step must finish, or make progress, within the
destination's `timeout`.

Socket timeouts alone do not bound a push: paramiko waits for some answers on events with no
timeout at all (a subsystem request, a channel open), and a server may trickle bytes. So each
step of a push (`step("auth", "login")`) arms the deadline, a data transfer re-arms it with
every block it moves (`progress`), and when a step outlives it the watchdog calls `abort`,
which closes the connection and so wakes the call blocked on it. The step then fails with a
`PushError` that names the step, the server and what it was waiting for.
"""

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from daemon.exports.errors import PushError


class Deadline:
    def __init__(self, seconds: float, server: str):
        self.seconds = seconds
        self.server = server
        self.abort: Callable[[], None] | None = None
        """Closes the push's connection (set once it exists); called from the watchdog's thread."""
        self._lock = threading.Lock()
        self._step: tuple[str, str] | None = None
        self._due = 0.0
        self._timer: threading.Timer | None = None
        self.expired: tuple[str, str] | None = None
        """The (step, what) that outlived the deadline, once one has."""

    @contextmanager
    def step(self, name: str, waiting_for: str):
        """A network step named `name` (the PushError step), waiting for `waiting_for`."""
        with self._lock:
            self._step = (name, waiting_for)
            self._due = time.monotonic() + self.seconds
            self._schedule(self.seconds)
        try:
            yield
        except Exception as exc:
            if self._expired_in(name):
                raise self._error() from exc
            raise
        finally:
            with self._lock:
                self._step = None
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
        if self._expired_in(name):  # the call returned after its connection was closed under it
            raise self._error()

    def progress(self, *_) -> None:
        """The step moved data: it has `seconds` again (a callback for transfers)."""
        self._due = time.monotonic() + self.seconds

    def _schedule(self, seconds: float) -> None:
        """Under the lock: check again in `seconds`."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(seconds, self._check)
        self._timer.daemon = True
        self._timer.start()

    def _check(self) -> None:
        with self._lock:
            if self._step is None:
                return
            left = self._due - time.monotonic()
            if left > 0:
                self._schedule(left)
                return
            self.expired = self._step
            abort = self.abort
        if abort is not None:
            try:
                abort()
            except OSError:
                pass  # already closed: the step fails on its own

    def _expired_in(self, name: str) -> bool:
        return self.expired is not None and self.expired[0] == name

    def _error(self) -> PushError:
        name, waiting_for = self.expired
        return PushError(name, f"{self.server} did not answer within {self.seconds:g} s ({waiting_for})", True)
