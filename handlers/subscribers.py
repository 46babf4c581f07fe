"""The subscriber-list import: one list per partner, keyed by email (case-insensitive).

`mode = "incremental"` adds and updates. `mode = "full_replace"` makes the list exactly the
file's valid rows: whoever is absent is removed (kept, with `removed_at`, for the record).
A full replacement that would remove more than `max_removal` of the current list is voided
(`mass-removal`): an incomplete file must never empty a newsletter list.
"""

import hashlib
import json
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.store.row_digests import DigestLog, TextDigests
from daemon.text import quoted
from handlers import option_values as v
from handlers.base import (
    CREATED,
    KEEP,
    UNCHANGED,
    UPDATED,
    Column,
    FileRejected,
    ImportCounts,
    ImportKind,
    OptionReader,
    Row,
    change_of,
    column_mapping,
)
from handlers.validation import normalized_email

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

FIELDS = ("email", "first_name", "last_name", "segment_code")


@dataclass(frozen=True)
class SubscribersOptions:
    columns: dict[str, str]
    mode: str
    max_removal: float
    """A fraction: 0.5 for "50%"."""


class SubscribersImport(ImportKind):
    kind = "subscribers"

    @staticmethod
    def read_options(reader: OptionReader) -> SubscribersOptions:
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

    def begin(self, tx: "Transaction", header: list[str]) -> None:
        self._writes = tx.subscribers.writes()
        self._batch: dict[str, _Subscriber | None] = {}
        """email key -> the subscriber as this batch's earlier rows left it (None: there is none)."""
        self._full = self.options.mode == "full_replace"
        if self._full:
            # Who was on the list before the file, and whom the file names: the absent are the rest.
            self._active = np.sort(np.fromiter(tx.subscribers.active_keys(self.partner), dtype=np.int64))
            self._listed = array("q")
        # The same text under another header or mapping means something else: both key the digests.
        described = json.dumps([self.kind, self.partner, sorted(self.options.columns.items()), header])
        self._text_digests = TextDigests(hashlib.blake2b(described.encode("utf-8", "surrogatepass")).digest())
        self._previous = tx.row_digests.previous(self.feed, self.partner, tx.subscribers.version(self.partner))
        self._digests = DigestLog(self._previous)
        self._waiting: list[tuple[bytes, str]] = []
        """(digest, email key) of subscribers created and not written yet: their keys come later."""
        self._changed = False

    def recognise(self, texts: list[str]) -> list[Any] | None:
        """The key of the subscriber each text last wrote, for texts the feed's last import left."""
        if not self._previous:
            return None
        return self._previous.lookup(self._text_digests.many(texts))

    def still_known(self, keys: list[int]) -> bool:
        if not self._digests.untouched(keys):
            return False  # an earlier row of this file rewrote one
        if self._full:
            self._listed.extend(keys)
        return True

    def prepare(self, tx: "Transaction", rows: list[Row]) -> None:
        """Check each row's email and look up the batch's subscribers in one go."""
        wanted = [facts.email.lower() for row in rows if (facts := self._facts(row)).email is not None]
        self._load(tx, wanted)

    def _facts(self, row: Row) -> "_RowFacts":
        facts = row.memo = _RowFacts(self._text_digests.one(row.text), row.cells())
        return facts

    def _load(self, tx: "Transaction", email_keys: list[str]) -> None:
        batch = self._batch
        wanted = [key for key in dict.fromkeys(email_keys) if key not in batch]
        for key in wanted:
            batch[key] = None
        for stored in tx.subscribers.find(self.partner, wanted):
            batch[stored.email_key] = _Subscriber(
                stored.key, stored.first_name, stored.last_name, stored.segment_code, stored.removed
            )

    def apply(self, tx: "Transaction", row: Row) -> str:
        facts = row.memo or self._facts(row)  # not prepared: recognised, then rewritten
        cells, raw_email, email = facts.cells, facts.raw_email, facts.email
        if raw_email in (KEEP, None):
            row.reject("missing-value", f"email ({quoted(self.options.columns['email'])}) is empty")
        if email is None:
            row.reject("invalid-email", f"the email {quoted(raw_email)} is not a valid email address")
        key = email.lower()
        changes = {}
        for name in ("first_name", "last_name", "segment_code"):
            value = change_of(cells.get(name))
            if value is not KEEP:
                changes[name] = value
        if key not in self._batch:
            self._write()
            self._load(tx, [key])
        existing = self._batch[key]
        if existing is None:
            self._writes.create(self.partner, key, email, changes)
            self._batch[key] = _Subscriber(
                None, changes.get("first_name"), changes.get("last_name"), changes.get("segment_code"), False
            )
            self._remember(facts.digest, None, key)
            self._changed = True
            return CREATED
        self._listed_key(existing.key)
        changed = {name: value for name, value in changes.items() if getattr(existing, name) != value}
        if not changed and not existing.removed:
            self._remember(facts.digest, existing.key, key)
            return UNCHANGED
        self._writes.update(self.partner, key, {**changed, "email": email}, restore=existing.removed)
        for name, value in changed.items():
            setattr(existing, name, value)
        existing.removed = False
        self._remember(facts.digest, existing.key, key)
        self._changed = True
        return UPDATED

    def _listed_key(self, key: int | None) -> None:
        if self._full and key is not None:
            self._listed.append(key)

    def _remember(self, digest: bytes, key: int | None, email_key: str) -> None:
        """The subscriber is now as the text of `digest` says; one created in this batch waits
        for its key."""
        if key is None:
            self._waiting.append((digest, email_key))
        else:
            self._digests.keep(digest, key)

    def _write(self) -> None:
        """Write what is queued; what waited for the keys of new subscribers is recorded."""
        keys = self._writes.flush()
        for digest, email_key in self._waiting:
            self._digests.keep(digest, keys[email_key])
        self._waiting.clear()

    def flush(self, tx: "Transaction") -> None:
        self._write()
        self._batch.clear()

    def finish(self, tx: "Transaction", counts: ImportCounts) -> None:
        if self._full:
            listed = np.frombuffer(self._listed, dtype=np.int64)
            absent = self._active[~np.isin(self._active, listed)]
            before = len(self._active)
            del self._active, self._listed, listed
            if before and len(absent) / before > self.options.max_removal:
                raise FileRejected(
                    "mass-removal",
                    f"the file would remove {len(absent)} of {before} subscribers ({len(absent) / before:.0%}), "
                    f"more than max_removal ({self.options.max_removal:.0%}); nothing was applied",
                )
            self._writes.remove(absent.tolist())
            self._digests.forget_all(absent)
            counts.extra["removed"] = len(absent)
            self._changed |= bool(len(absent))
        version = tx.subscribers.changed(self.partner) if self._changed else tx.subscribers.version(self.partner)
        tx.row_digests.save(self.feed, self.partner, version, self._digests.result())


class _RowFacts:
    """A row's text digest, its cells and its checked email."""

    __slots__ = ("digest", "cells", "raw_email", "email")

    def __init__(self, digest: bytes, cells: dict[str, str]):
        self.digest = digest
        self.cells = cells
        self.raw_email = change_of(cells.get("email"))
        self.email = normalized_email(self.raw_email) if self.raw_email not in (KEEP, None) else None


@dataclass
class _Subscriber:
    key: int | None
    """The store's key; None for one created in this batch and not written yet."""
    first_name: str | None
    last_name: str | None
    segment_code: str | None
    removed: bool
