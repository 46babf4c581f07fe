"""What an accept loop does when accepting fails: back off, log once in a while, go on.

At the descriptor limit (EMFILE, ENFILE) or out of kernel memory, `accept` fails at once for
as long as the condition lasts; a loop that gave up stopped serving for good, and one that
logged each failure wrote a line per try. Every listener of the daemon (SFTP, FTP, the
control socket) goes through this instead: a doubling pause up to `MAX_PAUSE`, and one
`server.accept_failed` line per `LOG_EVERY` seconds saying how many failures it stands for.
"""

import time

import structlog

log = structlog.get_logger("dropd.server")

FIRST_PAUSE = 0.05
MAX_PAUSE = 1.0
LOG_EVERY = 60.0


class AcceptPause:
    def __init__(self, listener: str, clock=time.monotonic, sleep=time.sleep):
        self.listener = listener
        self._clock = clock
        self._sleep = sleep
        self._pause = FIRST_PAUSE
        self._failures = 0
        self._logged_at: float | None = None

    def failed(self, exc: OSError, sleep: bool = True) -> float:
        """Count a failed accept and return the pause before the next try (slept here unless
        `sleep` is False: an event loop waits on its own)."""
        self._failures += 1
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY:
            log.error(
                "server.accept_failed",
                protocol=self.listener,
                error=exc.strerror or str(exc),
                failures=self._failures,
                message="new connections wait until descriptors or memory are free again",
            )
            self._logged_at = now
            self._failures = 0
        pause, self._pause = self._pause, min(self._pause * 2, MAX_PAUSE)
        if sleep:
            self._sleep(pause)
        return pause

    def succeeded(self) -> None:
        self._pause = FIRST_PAUSE
