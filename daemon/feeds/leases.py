"""Leases on running runs, for several instances sharing one PostgreSQL store.

Each run records its instance and a lease. This instance's heartbeat renews the leases of
its running runs every third of `daemon.lease`; a run whose lease expires belonged to an
instance that died or hangs. Every heartbeat also takes such runs over: they are recorded
failed (`interrupted`; their work was one transaction, so nothing of it was applied) and
their feeds are run again here, which imports the file still in its landing folder.
"""

import datetime
import threading

import structlog

from daemon.clock import utc_now, utc_stamp

log = structlog.get_logger("dropd.leases")


class LeaseKeeper:
    def __init__(self, store, instance: str, lease: float, request):
        """`request(feed, trigger)` asks for a run of a feed (the feed runner's)."""
        self.store = store
        self.instance = instance
        self.lease = lease
        self._request = request
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.beat()
            except Exception:
                log.exception("leases.heartbeat_failed")

    def beat(self) -> list[tuple[int, str, str]]:
        """Renew this instance's leases; take over the runs of instances whose leases expired."""
        until = utc_stamp(utc_now() + datetime.timedelta(seconds=self.lease))
        with self.store.transaction(label="leases") as tx:
            tx.runs.renew_leases(self.instance, until)
            taken = tx.runs.take_over_expired()
        for run_id, feed, instance in taken:
            log.warning("run.taken_over", run_id=run_id, feed=feed, instance=instance, by=self.instance)
        for feed in sorted({feed for _, feed, _ in taken}):
            self._request(feed, "recovery")
        return taken
