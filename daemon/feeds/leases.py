"""Leases on running runs, for several instances sharing one PostgreSQL store.

Each run records its instance and a lease. This instance's heartbeat renews the leases of
its running runs every third of `daemon.lease`; a run whose lease expires belonged to an
instance that died or hangs. Every heartbeat also takes such runs over: they are recorded
failed (`interrupted`; their work was one transaction, so nothing of it was applied) and
their feeds are run again here, which imports the file still in its landing folder.
"""

import datetime

import structlog

from daemon.clock import utc_now, utc_stamp
from daemon.periodic import Periodic

log = structlog.get_logger("dropd.leases")


class LeaseKeeper(Periodic):
    def __init__(self, store, instance: str, lease: float, request):
        """`request(feed, trigger)` asks for a run of a feed (the feed runner's)."""
        super().__init__("leases", lambda: lease / 3, self.beat, "leases.heartbeat_failed")
        self.store = store
        self.instance = instance
        self.lease = lease
        self._request = request

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
