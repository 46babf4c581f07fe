"""Turns run requests (arrival, window, run-now, recovery) into runs: one at a time per feed.

Requests for a feed that already has one waiting are merged into it: the waiting run sees
every file in the folder anyway. A request made while the feed runs waits for that run to
end and then looks again, so a file landing mid-run is never left behind. Different feeds
run side by side: imports up to MAX_PARALLEL at once, and exports up to as many in a pool of
their own, so that exports waiting on a partner's server never hold back a partner's upload
(nor the reverse). A handler's fault stays inside its run.
"""

import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager

import structlog

from daemon.clock import utc_now, utc_stamp
from daemon.exports.runs import run_export
from daemon.feeds import landing
from daemon.feeds.runs import run_feed
from daemon.memory import release_free_memory
from daemon.schedules import retry_deadline
from daemon.store.records import StoreUnavailable

log = structlog.get_logger("dropd.feed_runner")

MAX_PARALLEL = 4
STORE_RETRY = 5.0
"""Seconds before a run the store could not take is tried again; it doubles, up to MAX_STORE_RETRY."""
MAX_STORE_RETRY = 60.0


class FeedRunner:
    def __init__(self, config_source, context_for, tell=lambda feed, text: None):
        """`config_source()`: the config in force; `context_for(retry_later)`: the `RunContext`
        a run gets, given how it asks to be run again later; `tell(feed, text)`: where a run
        waiting for its turn says so."""
        self._config = config_source
        self._context_for = context_for
        self._tell = tell
        self._lock = threading.Lock()
        self._store_backoff: dict[str, float] = {}
        """Each feed's wait before its next try while the store cannot be reached."""
        self._waiting: dict[str, Future] = {}
        self._feed_locks: dict[str, threading.Lock] = {}
        self._slots = {direction: threading.BoundedSemaphore(MAX_PARALLEL) for direction in ("import", "export")}
        self._threads: set[threading.Thread] = set()
        self._running: dict[str, dict] = {}

    def request(self, feed_name: str, trigger: str, force: bool = False) -> Future:
        """Queue a run of `feed_name`; the future resolves to the list of its run records."""
        with self._lock:
            waiting = self._waiting.get(feed_name)
            if waiting is not None and not force:
                return waiting
            future: Future = Future()
            self._waiting[feed_name] = future
            feed_lock = self._feed_locks.setdefault(feed_name, threading.Lock())
            thread = threading.Thread(
                target=self._run,
                args=(feed_name, trigger, force, future, feed_lock),
                name=f"run-{feed_name}",
                daemon=True,
            )
            self._threads.add(thread)
        thread.start()
        return future

    def _run(self, feed_name, trigger, force, future: Future, feed_lock: threading.Lock) -> None:
        try:
            direction = self._direction(feed_name)
            with self._turn(feed_name, feed_lock, direction):
                self._tell(feed_name, f"started ({trigger})")
                with self._lock:
                    if self._waiting.get(feed_name) is future:
                        del self._waiting[feed_name]
                    self._running[feed_name] = {"feed": feed_name, "trigger": trigger, "since": utc_stamp()}
                try:
                    future.set_result(self._run_feed(feed_name, trigger, force))
                    self._store_backoff.pop(feed_name, None)
                except StoreUnavailable as exc:
                    delay = min(self._store_backoff.get(feed_name, STORE_RETRY / 2) * 2, MAX_STORE_RETRY)
                    self._store_backoff[feed_name] = delay
                    log.warning(
                        "run.store_unavailable", feed=feed_name, trigger=trigger, retry_in=delay, error=str(exc)
                    )
                    self.later(feed_name, delay)
                    future.set_exception(exc)
                finally:
                    with self._lock:
                        self._running.pop(feed_name, None)
                    release_free_memory()
        except Exception as exc:
            log.exception("run.request_failed", feed=feed_name, trigger=trigger)
            future.set_exception(exc)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    @contextmanager
    def _turn(self, feed_name: str, feed_lock: threading.Lock, direction: str):
        """The feed's turn (its previous run over) and a run slot of its direction; whoever
        waits on the run hears why it waits."""
        if not feed_lock.acquire(blocking=False):
            self._tell(feed_name, "waiting: the feed's previous run is still going")
            feed_lock.acquire()
        try:
            slot = self._slots[direction]
            if not slot.acquire(blocking=False):
                self._tell(feed_name, f"waiting for a free run slot ({MAX_PARALLEL} {direction}s run at once)")
                slot.acquire()
            try:
                yield
            finally:
                slot.release()
        finally:
            feed_lock.release()

    def _direction(self, feed_name: str) -> str:
        """Which pool of run slots the feed's runs take ("import" for a feed no longer known:
        its run ends at once, saying so)."""
        try:
            return self._config().feed(feed_name)[1].direction
        except KeyError:
            return "import"

    def _run_feed(self, feed_name, trigger, force) -> list:
        config = self._config()
        try:
            partner, feed = config.feed(feed_name)
        except KeyError:
            raise LookupError(f"no feed named {feed_name!r}") from None
        if not partner.runs(feed):
            log.info("run.not_started", feed=feed_name, reason="feed or partner disabled")
            return []
        context = self._context_for(lambda seconds: self.later(feed_name, seconds))
        if feed.direction == "export":
            block_end = retry_deadline(trigger, feed.direction, config.daemon.timezone, feed.name, utc_now())
            return [run_export(context, partner, feed, trigger, block_end)]
        return run_feed(context, partner, feed, trigger, force=force)

    def later(self, feed_name: str, seconds: float) -> None:
        """Ask again in `seconds` (a data file waiting for its count file, or the reverse)."""
        timer = threading.Timer(seconds, self.request, args=(feed_name, "count-wait"))
        timer.daemon = True
        timer.start()

    def upload_finished(self, upload) -> None:
        """A partner's upload that no import feed will take is logged once, with what the
        partner's feeds expect: a misnamed file is the most common support call."""
        config = self._config()
        if landing.feeds_for(config, upload.real_path):
            return
        partner = config.partners.get(upload.partner)
        expected = (
            [f"{feed.path.rstrip('/')}/{feed.prefix}*" for feed in partner.feeds if feed.direction == "import"]
            if partner
            else []
        )
        if expected:
            log.warning("file.unmatched", partner=upload.partner, path=upload.path, expected=expected)

    def wants(self, path) -> bool:
        """True for a data or count file in some feed's landing folder."""
        return bool(landing.feeds_for(self._config(), path))

    def file_arrived(self, path) -> None:
        """A complete file landed: run each `on_arrival` feed whose folder and prefix it matches."""
        for _, feed in landing.feeds_for(self._config(), path):
            if "on_arrival" in feed.schedule:
                self.request(feed.name, "arrival")

    def activity(self) -> dict:
        """Feeds running now (with trigger and start) and feeds with a run waiting to start."""
        with self._lock:
            return {
                "running": sorted(self._running.values(), key=lambda r: r["feed"]),
                "waiting": sorted(self._waiting),
            }

    def busy(self) -> bool:
        with self._lock:
            return any(thread.is_alive() for thread in self._threads)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self.busy()
