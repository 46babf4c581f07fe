"""Runs feeds at the times their `schedule` entries name (`daemon/schedules.py`), in local time.

Every few seconds each entry of each enabled feed is asked for its last time at or before
now. A time is claimed in the store before its run is requested, so it runs once whatever
happens: two instances on one store, a restart, a clock that DST sets back. Only the last
time counts, so a daemon that was down over several times catches up once when it starts,
not once per time missed. An entry with no claim yet (a new feed, or an entry just added to
a feed's schedule) does not run a time that passed before it was seen; it starts from the
next one (an old window name still runs while its window is open, as windows always did).
"""

import threading

import structlog

from daemon import schedules
from daemon.clock import utc_now

log = structlog.get_logger("dropd.scheduler")

TICK_SECONDS = 5
MAX_REMEMBERED = 10_000
"""Claim keys remembered here as taken (so a tick asks the store only about new ones)."""


def claim_slot(store, feed: str, key: str) -> bool:
    """The time `key` of `feed`, claimed in the store: True for the one claim that takes it."""
    with store.transaction(label=feed) as tx:
        return tx.claims.claim_window(feed, key)


def has_claims(store, feed: str, pattern: str) -> bool:
    with store.reading() as tx:
        return tx.claims.has_any(feed, pattern)


class FeedScheduler:
    def __init__(self, config_source, claim, request, history=lambda feed, pattern: True, clock=utc_now):
        """`config_source()`: the config in force; `claim(feed, key)`: True once, for the
        instance that takes the time (in the store); `history(feed, pattern)`: whether the feed
        ever claimed a time of the entry whose keys match `pattern`; `request(feed, trigger)`
        starts a run."""
        self._config = config_source
        self._claim = claim
        self._request = request
        self._history = history
        self._clock = clock
        self._taken: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[tuple[str, str]]:
        """Request a run for every feed whose last scheduled time is not claimed yet; the
        (feed, claim key) of each run requested."""
        config = self._config()
        now = self._clock()
        zone = config.daemon.timezone
        started = []
        for partner, feed in config.feeds():
            if not partner.runs(feed):
                continue
            for text in feed.schedule:
                entry = schedules.parse(text, feed.direction)
                if entry is None:
                    continue
                slot = entry.last_at_or_before(now, zone, feed.name)
                key = entry.claim_key(slot, zone)
                if (feed.name, key) in self._taken:
                    continue
                fresh = not self._history(feed.name, entry.claim_pattern)
                if self._claim(feed.name, key):
                    if fresh and not entry.catches_up_fresh(slot, now, zone, feed.name):
                        log.info("schedule.first_time_skipped", feed=feed.name, entry=text, at=slot.isoformat())
                    else:
                        log.info("schedule.due", feed=feed.name, entry=text, at=slot.isoformat(), key=key)
                        self._request(feed.name, entry.trigger)
                        started.append((feed.name, key))
                self._remember(feed.name, key)
        return started

    def _remember(self, feed: str, key: str) -> None:
        if len(self._taken) >= MAX_REMEMBERED:
            self._taken.clear()
        self._taken.add((feed, key))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("scheduler.tick_failed")
            if self._stop.wait(TICK_SECONDS):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
