"""The subscriber-list import: one list per partner, keyed by email (case-insensitive).

`mode = "incremental"` adds and updates. `mode = "full_replace"` makes the list exactly the
file's valid rows: whoever is absent is removed (kept, with `removed_at`, for the record).
A full replacement that would remove more than `max_removal` of the current list is voided
(`mass-removal`): an incomplete file must never empty a newsletter list.
"""

import secrets
from dataclasses import dataclass

from handlers import option_values as v
from handlers.base import (
    CREATED,
    KEEP,
    UNCHANGED,
    UPDATED,
    Column,
    FileRejected,
    ImportKind,
    column_mapping,
)
from handlers.validation import normalized_email

FIELDS = ("email", "first_name", "last_name", "segment_code")


@dataclass(frozen=True)
class SubscribersOptions:
    columns: dict
    mode: str
    max_removal: float
    """A fraction: 0.5 for "50%"."""


class SubscribersImport(ImportKind):
    kind = "subscribers"

    @staticmethod
    def read_options(reader) -> SubscribersOptions:
        table = reader.sub("columns")
        columns = {name: name for name in FIELDS}
        if table is not None:
            try:
                columns = column_mapping(table.table, FIELDS, ("email",))
            except ValueError as exc:
                table.error("", str(exc))
        return SubscribersOptions(
            columns=columns,
            mode=reader.take("mode", v.choice("full_replace", "incremental"), "incremental"),
            max_removal=reader.take("max_removal", v.percent, 0.5),
        )

    def columns(self) -> list[Column]:
        return [Column(name, header, required=name == "email") for name, header in self.options.columns.items()]

    def begin(self, tx, header: list[str]) -> None:
        self._stamp = secrets.randbits(62)
        """Marks every subscriber this file lists, so a full replacement finds the absent ones."""
        self._active_before = tx.subscribers.active_count(self.partner)

    def apply(self, tx, row) -> str:
        raw_email = row.change("email")
        if raw_email in (KEEP, None):
            row.reject("missing-value", f"email ({self.options.columns['email']!r}) is empty")
        email = normalized_email(raw_email)
        if email is None:
            row.reject("invalid-email", f"{raw_email!r} is not a valid email address")
        key = email.lower()
        changes = {}
        for name in ("first_name", "last_name", "segment_code"):
            value = row.change(name)
            if value is not KEEP:
                changes[name] = value
        existing = tx.subscribers.find(self.partner, key)
        if existing is None:
            tx.subscribers.create(self.partner, key, email, changes, self._stamp)
            return CREATED
        changed = {name: value for name, value in changes.items() if getattr(existing, name) != value}
        if not changed and not existing.removed:
            tx.subscribers.seen(existing.key, self._stamp)
            return UNCHANGED
        tx.subscribers.update(existing.key, {**changed, "email": email}, self._stamp, restore=existing.removed)
        return UPDATED

    def finish(self, tx, counts) -> None:
        if self.options.mode != "full_replace":
            return
        absent = tx.subscribers.absent_count(self.partner, self._stamp)
        before = self._active_before
        if before and absent / before > self.options.max_removal:
            raise FileRejected(
                "mass-removal",
                f"the file would remove {absent} of {before} subscribers ({absent / before:.0%}), "
                f"more than max_removal ({self.options.max_removal:.0%}); nothing was applied",
            )
        tx.subscribers.remove_absent(self.partner, self._stamp)
        counts.extra["removed"] = absent
