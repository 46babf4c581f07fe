"""The subscriber-list import: one list per partner, keyed by email (case-insensitive).

`mode = "incremental"` adds and updates. `mode = "full_replace"` makes the list exactly the
file's valid rows: whoever is absent is removed (kept, with `removed_at`, for the record).
A full replacement that would remove more than `max_removal` of the current list is voided
(`mass-removal`): an incomplete file must never empty a newsletter list.
"""

import re
import secrets
from dataclasses import dataclass

from daemon.store import utc_now
from handlers import option_values as v
from handlers.base import (
    FileRejected,
    ImportCounts,
    RowErrors,
    column_mapping,
    well_formed,
)
from handlers.validation import normalized_email

FIELDS = ("email", "first_name", "last_name", "segment_code")
UNSET = "UNSET"


@dataclass(frozen=True)
class SubscribersOptions:
    columns: dict
    mode: str
    max_removal: float
    """A fraction: 0.5 for "50%"."""


def _percent(value) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", v.text(value))
    if not match or float(match.group(1)) > 100:
        raise ValueError(f"{value!r} is not a percentage from 0% to 100% (like \"50%\")")
    return float(match.group(1)) / 100


class SubscribersImport:
    kind = "subscribers"

    @staticmethod
    def read_options(reader) -> SubscribersOptions:
        table = reader.sub("columns")
        columns = {"email": "email", "first_name": "first_name", "last_name": "last_name", "segment_code": "segment_code"}
        if table is not None:
            try:
                columns = column_mapping(table.table, FIELDS, ("email",))
            except ValueError as exc:
                table.error("", str(exc))
        return SubscribersOptions(
            columns=columns,
            mode=reader.take("mode", v.choice("full_replace", "incremental"), "incremental"),
            max_removal=reader.take("max_removal", _percent, 0.5),
        )

    def __init__(self, partner: str, feed: str, options: SubscribersOptions, timezone: str = "UTC"):
        self.partner = partner
        self.feed = feed
        self.options = options

    def _locate(self, header: list[str]) -> None:
        positions = {}
        for index, name in enumerate(header):
            if name in positions and name in self.options.columns.values():
                raise FileRejected("duplicate-column", f"column {name!r} appears twice in the header")
            positions.setdefault(name, index)
        email_column = self.options.columns["email"]
        if email_column not in positions:
            raise FileRejected("missing-column", f"required column {email_column!r} (email) is not in the header")
        self.index = {name: positions.get(column) for name, column in self.options.columns.items()}

    def run(self, store, connection, rows, errors: RowErrors) -> ImportCounts:
        self._locate(rows.header)
        counts = ImportCounts()
        stamp = secrets.randbits(62)
        active_before = connection.execute(
            "SELECT COUNT(*) FROM subscribers WHERE partner = ? AND removed_at IS NULL", (self.partner,)
        ).fetchone()[0]
        for row, _text, values in well_formed(rows, errors, counts):
            outcome = self._apply_row(connection, row, values, errors, stamp)
            setattr(counts, outcome, getattr(counts, outcome) + 1)
        if self.options.mode == "full_replace":
            counts.extra["removed"] = self._remove_absent(connection, stamp, active_before)
        return counts

    def _cell(self, values, name):
        index = self.index.get(name)
        return values[index].strip() if index is not None else None

    def _apply_row(self, connection, row, values, errors: RowErrors, stamp: int) -> str:
        raw_email = self._cell(values, "email")
        if not raw_email or raw_email == UNSET:
            errors.reject(row, "missing-value", f"email ({self.options.columns['email']!r}) is empty", values)
            return "rejected"
        email = normalized_email(raw_email)
        if email is None:
            errors.reject(row, "invalid-email", f"{raw_email!r} is not a valid email address", values)
            return "rejected"
        key = email.lower()
        existing = connection.execute(
            "SELECT id, first_name, last_name, segment_code, removed_at FROM subscribers WHERE partner = ? AND email_key = ?",
            (self.partner, key),
        ).fetchone()
        changes = {}
        for name in ("first_name", "last_name", "segment_code"):
            cell = self._cell(values, name)
            if cell == UNSET:
                changes[name] = None
            elif cell:
                changes[name] = cell
        now = utc_now()
        if existing is None:
            connection.execute(
                "INSERT INTO subscribers (partner, email_key, email, first_name, last_name, segment_code, seen_in, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.partner, key, email, changes.get("first_name"), changes.get("last_name"),
                 changes.get("segment_code"), stamp, now, now),
            )  # fmt: skip
            return "created"
        changed = {name: value for name, value in changes.items() if existing[name] != value}
        if existing["removed_at"] is not None:
            changed["removed_at"] = None
        if not changed:
            connection.execute("UPDATE subscribers SET seen_in = ? WHERE id = ?", (stamp, existing["id"]))
            return "unchanged"
        changed.update(email=email, seen_in=stamp, updated_at=now)
        assignments = ", ".join(f"{name} = ?" for name in changed)
        connection.execute(f"UPDATE subscribers SET {assignments} WHERE id = ?", (*changed.values(), existing["id"]))
        return "updated"

    def _remove_absent(self, connection, stamp: int, active_before: int) -> int:
        absent = connection.execute(
            "SELECT COUNT(*) FROM subscribers WHERE partner = ? AND removed_at IS NULL AND seen_in IS NOT ?",
            (self.partner, stamp),
        ).fetchone()[0]
        if active_before and absent / active_before > self.options.max_removal:
            raise FileRejected(
                "mass-removal",
                f"the file would remove {absent} of {active_before} subscribers ({absent / active_before:.0%}), "
                f"more than max_removal ({self.options.max_removal:.0%}); nothing was applied",
            )
        connection.execute(
            "UPDATE subscribers SET removed_at = ?, updated_at = ? WHERE partner = ? AND removed_at IS NULL AND seen_in IS NOT ?",
            (utc_now(), utc_now(), self.partner, stamp),
        )
        return absent
