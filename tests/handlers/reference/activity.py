"""The activity import as dropd ran it before imports were batched (commit bb3851f): one row at
a time, an insert per row whose result says whether the event was new. `apply` is that
commit's; its `tx.events.add` is made here of today's calls, one event at a time."""

from handlers.activity import ActivityImport
from handlers.base import CREATED, UNCHANGED


class ReferenceActivityImport(ActivityImport):
    def take_batch(self, tx, batch, layout, delimiter, counts) -> bool:
        return False  # every row by itself

    def prepare(self, tx, rows):
        pass

    def flush(self, tx):
        pass

    def _add(self, tx, partner, event_id, contact_id, action, time, fields) -> bool:
        if tx.events.stored(partner, [event_id]):
            return False
        writes = tx.events.writes()
        writes.add(partner, event_id, contact_id, action, time, fields)
        writes.flush()
        return True

    def apply(self, tx, row) -> str:
        event = self._event(row)
        if event["time"] < self._since:
            return "too_old"
        action = event.get("action", "").lower() or None
        fields = {k: val for k, val in event.items() if k not in ("event_id", "contact_id", "action", "time")}
        if not self._add(tx, self.partner, event["event_id"], event["contact_id"], action, event["time"], fields):
            return UNCHANGED
        if action == "opt-out":
            self._opted_out += tx.contacts.opt_out(self.partner, event["contact_id"])
            self._opted_out += tx.subscribers.opt_out(self.partner, event["contact_id"].lower())
        return CREATED
