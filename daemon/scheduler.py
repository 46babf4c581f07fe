"""Runs feeds in their daily windows (the table in `daemon/windows.py`), in local time.

The `schedule` library ticks every few seconds; each tick asks, in the configured time zone,
which windows are open now. A window is claimed in the store under its local date and name
before its run is requested, so it runs once whatever happens: restarts inside the window
catch up (the claim is still free), a DST change that repeats an hour finds the claim
taken, one that skips an hour still leaves the window's other hour open.
"""

import threading

import schedule
import structlog

from daemon.clock import utc_now
from daemon.windows import WINDOWS, due_window

log = structlog.get_logger("dropd.scheduler")

TICK_SECONDS = 15


def claim_window(store, feed: str, key: str) -> bool:
    """The window `key` of `feed`, claimed in the store: True for the one claim that takes it."""
    with store.transaction(label=feed) as tx:
        return tx.claims.claim_window(feed, key)


class WindowScheduler:
    def __init__(self, config_source, claim, request, clock=utc_now):
        """`config_source()`: the config in force; `claim(feed, window key)`: True once, for the
        instance that takes the window (in the store); `request(feed, trigger)` starts a run."""
        self._config = config_source
        self._claim = claim
        self._request = request
        self._clock = clock
        self._jobs = schedule.Scheduler()
        self._jobs.every(TICK_SECONDS).seconds.do(self.tick)
        self._stop = threading.Event()
        self._thread = None

    def tick(self) -> list[tuple[str, str]]:
        """Request a run for every feed whose window is open and not yet claimed."""
        config = self._config()
        now = self._clock()
        started = []
        for partner, feed in config.feeds():
            if not partner.runs(feed):
                continue
            for name in feed.schedule:
                if name not in WINDOWS:
                    continue
                key = due_window(now, config.daemon.timezone, name, feed.name)
                if key and self._claim(feed.name, key):
                    log.info("window.opened", feed=feed.name, window=key)
                    self._request(feed.name, f"window:{name}")
                    started.append((feed.name, key))
        return started

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self._safe_tick()
        while not self._stop.wait(1):
            try:
                self._jobs.run_pending()
            except Exception:
                log.exception("scheduler.tick_failed")

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:
            log.exception("scheduler.tick_failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
