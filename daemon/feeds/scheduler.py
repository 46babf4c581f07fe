"""Import windows: overnight 03-05, morning 10-12, afternoon 14-16, evening 18-20, local time.

The `schedule` library ticks every few seconds; each tick asks, in the configured time zone,
which windows are open now. A window is claimed in the store under its local date and name
before its run is requested, so it runs once whatever happens: restarts inside the window
catch up (the claim is still free), a DST change that repeats an hour finds the claim
taken, one that skips an hour still leaves the window's other hour open.
"""

import datetime
import threading
import zoneinfo

import schedule
import structlog

log = structlog.get_logger("dropd.scheduler")

IMPORT_WINDOWS = {"overnight": (3, 5), "morning": (10, 12), "afternoon": (14, 16), "evening": (18, 20)}
TICK_SECONDS = 15


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def open_window(now: datetime.datetime, timezone: str, name: str) -> str | None:
    """The claim key ("2026-11-23/overnight") when window `name` is open at `now`, else None."""
    local = now.astimezone(zoneinfo.ZoneInfo(timezone))
    start, end = IMPORT_WINDOWS[name]
    return f"{local.date().isoformat()}/{name}" if start <= local.hour < end else None


class WindowScheduler:
    def __init__(self, core, request, clock=utc_now):
        self.core = core
        self._request = request
        self._clock = clock
        self._jobs = schedule.Scheduler()
        self._jobs.every(TICK_SECONDS).seconds.do(self.tick)
        self._stop = threading.Event()
        self._thread = None

    def tick(self) -> list[tuple[str, str]]:
        """Request a run for every feed whose window is open and not yet claimed."""
        config = self.core.config
        now = self._clock()
        started = []
        for partner, feed in config.feeds():
            if not (feed.enabled and partner.enabled):
                continue
            for name in feed.schedule:
                if name not in IMPORT_WINDOWS:
                    continue
                key = open_window(now, config.daemon.timezone, name)
                if key and self.core.store.claim_window(feed.name, key):
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
