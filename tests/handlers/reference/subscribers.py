"""The subscriber-list import as dropd ran it before imports were batched (commit bb3851f): one
row at a time, a lookup and a write per row; `apply` is that commit's, with its repository
calls made one value at a time over today's API. A full replacement removes whoever was active
before the file and is not in it, as that commit's `seen_in` stamp did."""

from daemon.text import quoted
from handlers.base import CREATED, KEEP, UNCHANGED, UPDATED, FileRejected
from handlers.subscribers import SubscribersImport
from handlers.validation import normalized_email


class ReferenceSubscribersImport(SubscribersImport):
    def begin(self, tx, header):
        self._writes = tx.subscribers.writes()
        self._active = set(tx.subscribers.active_keys(self.partner))
        self._listed = set()

    def recognise(self, texts):
        return None  # no shortcut: every row goes its whole way

    def prepare(self, tx, rows):
        pass

    def flush(self, tx):
        pass

    def apply(self, tx, row) -> str:
        raw_email = row.change("email")
        if raw_email in (KEEP, None):
            row.reject("missing-value", f"email ({quoted(self.options.columns['email'])}) is empty")
        email = normalized_email(raw_email)
        if email is None:
            row.reject("invalid-email", f"the email {quoted(raw_email)} is not a valid email address")
        key = email.lower()
        changes = {}
        for name in ("first_name", "last_name", "segment_code"):
            value = row.change(name)
            if value is not KEEP:
                changes[name] = value
        found = tx.subscribers.find(self.partner, [key])
        existing = found[0] if found else None
        if existing is None:
            self._writes.create(self.partner, key, email, changes)
            self._writes.flush()
            return CREATED
        self._listed.add(existing.key)
        changed = {name: value for name, value in changes.items() if getattr(existing, name) != value}
        if not changed and not existing.removed:
            return UNCHANGED
        self._writes.update(self.partner, key, {**changed, "email": email}, restore=existing.removed)
        self._writes.flush()
        return UPDATED

    def finish(self, tx, counts) -> None:
        if self.options.mode != "full_replace":
            return
        absent = sorted(self._active - self._listed)
        before = len(self._active)
        if before and len(absent) / before > self.options.max_removal:
            raise FileRejected(
                "mass-removal",
                f"the file would remove {len(absent)} of {before} subscribers ({len(absent) / before:.0%}), "
                f"more than max_removal ({self.options.max_removal:.0%}); nothing was applied",
            )
        self._writes.remove(absent)
        self._writes.flush()
        counts.extra["removed"] = len(absent)
