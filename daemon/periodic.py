"""A thread that does one piece of work every so often, until stopped.

The work's failures are logged (`<name>` event, with the traceback) and never end the loop:
the next turn tries again. `interval` is read before each wait, so a reload applies.
"""

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("dropd.periodic")


class Periodic:
    def __init__(self, name: str, interval: Callable[[], float], work: Callable[[], object], failure_event: str):
        self.name = name
        self._interval = interval
        self._work = work
        self._failure_event = failure_event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self._work()
            except Exception:
                log.exception(self._failure_event)
