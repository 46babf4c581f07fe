"""The contacts import: column mapping, per-row validation, matching, opt-out, custom fields.

Matching order: by CRM ID, then by phone (E.164), then by the partner's contact ID, else a
new contact. A row whose phone or contact ID belongs to a different contact than the one it
matched is rejected (`duplicate-contact`); a match whose CRM ID differs from the row's is
rejected (`phone-match-found-but-crmId-mismatch`, `contactId-match-found-but-crmId-mismatch`).

Rows come in batches (`handlers/base.py`): `prepare` looks up the contacts a batch names in
three statements and `apply` matches each row in file order against `ContactView`, which sees
what the batch's earlier rows did; the batch's writes go to the store at its end.

Two shortcuts keep re-imports cheap, both exact:
- a record whose text the feed's last import left on a contact (the digest set of
  `daemon/store/row_digests.py`), when no run has changed the partner's contacts since, is
  unchanged without being split or looked up, unless an earlier row of this file rewrote
  that contact;
- otherwise, a row whose contact still carries the hash of the same mapped cells is
  unchanged and skips validation and matching.
Rows with partial errors are in neither, so their errors are reported again each time.
"""

import functools
import hashlib
import json
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import phonenumbers

from daemon.store.records import KeyTaken
from daemon.store.row_digests import DigestLog, TextDigests
from daemon.text import quoted
from handlers import option_values as v
from handlers.base import (
    CREATED,
    KEEP,
    UNCHANGED,
    UNSET,
    UPDATED,
    Batch,
    Column,
    FeedSetup,
    ImportCounts,
    ImportKind,
    Layout,
    OptionReader,
    Row,
    change_of,
    column_mapping,
)
from handlers.contact_view import ContactView, ViewedContact
from handlers.typed_values import CUSTOM_TYPES, custom_value
from handlers.validation import language_code, normalized_email, normalized_emails, phone_to_e164, phones_to_e164

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

FIELDS = (
    "contact_id", "first_name", "last_name", "mobile_number", "email", "staff_id", "crm_id", "preferred_name", "language",
    "messaging_status_sms", "messaging_status_web_bot",
)  # fmt: skip
CHANNEL_STATUSES = {"sms": "messaging_status_sms", "web bot": "messaging_status_web_bot"}
"""Seed 001's per-channel messaging status fields, by the channel's name in messages."""
STATUSES = ("opted-in", "opted-out", "paused")


def messaging_status(value: str) -> str | None:
    """A messaging status as the seed writes it ("Opted In", "opted-out", "PAUSED"), in its
    stored form; None for anything else."""
    status = " ".join(value.lower().split()).replace(" ", "-")
    return status if status in STATUSES else None


REQUIRED = ("contact_id", "first_name", "last_name", "mobile_number")
MAX_CUSTOM_FIELDS = 25
MAX_CUSTOM_LENGTH = 1000


@dataclass(frozen=True)
class OptOut:
    column: str
    opted_in: frozenset[str]
    opted_out: frozenset[str]
    empty: str


@dataclass(frozen=True)
class CustomField:
    field: str
    column: str
    required: bool
    mergeable: bool
    visible: bool
    type: str = "string"
    """How the value is stored: string, number, integer, boolean or date (typed_values.CUSTOM_TYPES)."""


@dataclass(frozen=True)
class ContactsOptions:
    columns: dict[str, Any]
    opt_out: OptOut | None
    custom: tuple[Any, ...]
    phone_region: str
    create: bool = True
    """False: rows for unknown contacts are rejected (`contact-not-found`), known ones updated."""


def _region(value: object) -> str:
    region = v.text(value).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f'{value!r} is not a region code phonenumbers knows (like "US" or "GB")')
    return region


def _read_opt_out(reader: OptionReader) -> OptOut | None:
    table = reader.sub("opt_out")
    if table is None:
        return None

    def lower(items: tuple[str, ...] | None) -> frozenset[str]:
        return frozenset(item.strip().lower() for item in items or ())

    opt_out = OptOut(
        column=table.take("column", v.non_empty_text),
        opted_in=lower(table.take("opted_in", v.text_list)),
        opted_out=lower(table.take("opted_out", v.text_list)),
        empty=table.take("empty", v.choice("keep", "opt_in", "opt_out"), "keep"),
    )
    if opt_out.opted_in & opt_out.opted_out:
        table.error("opted_out", "shares values with opted_in")
    table.finish()
    return opt_out


def _read_custom(reader: OptionReader) -> tuple[Any, ...]:
    tables = reader.entries("custom")
    if len(tables) > MAX_CUSTOM_FIELDS:
        reader.error("custom", f"{len(tables)} custom fields; at most {MAX_CUSTOM_FIELDS}")
    fields = []
    for table in tables:
        fields.append(
            CustomField(
                field=table.take("field", v.non_empty_text),
                column=table.take("column", v.non_empty_text),
                required=table.take("required", v.boolean, False),
                mergeable=table.take("mergeable", v.boolean, False),
                visible=table.take("visible", v.boolean, True),
                type=table.take("type", v.choice(*CUSTOM_TYPES), "string"),
            )
        )
        table.finish()
    names = [field.field for field in fields]
    if len(set(names)) != len(names):
        reader.error("custom", "a custom field name is used twice")
    return tuple(fields)


def _fingerprint(partner: str, options: ContactsOptions) -> bytes:
    """Stable across processes: a mapping change makes every row count as changed again."""
    opt_out = options.opt_out
    described = {
        "partner": partner,
        "columns": sorted(options.columns.items()),
        "opt_out": opt_out and [opt_out.column, sorted(opt_out.opted_in), sorted(opt_out.opted_out), opt_out.empty],
        "custom": [[c.field, c.column] + ([c.type] if c.type != "string" else []) for c in options.custom],
        "region": options.phone_region,
        "create": options.create,
    }
    return json.dumps(described, sort_keys=True).encode()


class _RowFacts:
    """What `prepare` (or `apply`, for a row it did not see) works out for a row: the digest of
    its text, the hash of its cells, its cells and, once validated, its CRM ID and phone."""

    __slots__ = ("digest", "source_hash", "cells", "contact_id", "validated", "crm_id", "phone")

    def __init__(self, digest: bytes, source_hash: bytes, cells: dict[str, Any]):
        self.digest = digest
        self.source_hash = source_hash
        self.cells = cells
        self.contact_id = cells["contact_id"]
        self.validated = False

    def validate(self, region: str) -> None:
        if self.validated:
            return
        crm_id = change_of(self.cells.get("crm_id"))
        self.crm_id = None if crm_id is KEEP else crm_id
        raw_phone = self.cells["mobile_number"]
        self.phone = phone_to_e164(raw_phone, region) if raw_phone else None
        self.validated = True


def _distinct(values: list[Any]) -> bool:
    return len(set(values)) == len(values)


class ContactsImport(ImportKind):
    kind = "contacts"

    @staticmethod
    def read_options(reader: OptionReader) -> ContactsOptions:
        columns_table = reader.sub("columns", required=True)
        columns: dict[str, str] = {}
        if columns_table is not None:
            try:
                columns = column_mapping(columns_table.table, FIELDS, REQUIRED)
            except ValueError as exc:
                columns_table.error("", str(exc))
        return ContactsOptions(
            columns=columns,
            opt_out=_read_opt_out(reader),
            custom=_read_custom(reader),
            phone_region=reader.take("phone_region", _region, "US"),
            create=reader.take("create", v.boolean, True),
        )

    def __init__(self, feed: FeedSetup):
        super().__init__(feed)
        self.fingerprint = _fingerprint(self.partner, self.options)

    def columns(self) -> list[Column]:
        mapped = self.options.columns
        columns = [Column(name, mapped[name], required=True) for name in REQUIRED]
        columns += [Column(name, header) for name, header in mapped.items() if name not in REQUIRED]
        if self.options.opt_out:
            columns.append(Column("opt_out", self.options.opt_out.column))
        columns += [
            Column(f"custom:{c.field}", c.column, required=c.required, label=f"custom field {c.field}")
            for c in self.options.custom
        ]
        return columns

    def begin(self, tx: "Transaction", header: list[str]) -> None:
        tx.contacts.serialize_changes(self.partner)  # a contacts export's snapshot never splits this import
        tx.contacts.declare_custom_fields(
            self.partner, [(c.field, c.mergeable, c.visible) for c in self.options.custom]
        )
        # The same cells under another header mean something else: the header keys every digest.
        self._digest_key = hashlib.blake2b(
            self.fingerprint + "\x1f".join(header).encode("utf-8", "surrogatepass")
        ).digest()
        self._text_digests = TextDigests(self._digest_key)
        self._previous = tx.row_digests.previous(self.feed, self.partner, tx.contacts.version(self.partner))
        self._digests = DigestLog(self._previous)
        self._waiting: list[tuple[bytes | None, ViewedContact]] = []
        """(digest, contact) of contacts created and not written yet: their keys come later."""
        self._changed = False
        self._view = ContactView(tx.contacts, tx.contacts.writes(), self.partner)
        self._taken: tuple[Batch, int, bool] | None = None
        """(batch, contacts created, `_changed` before) of a batch `take_batch` took and the
        store has not confirmed yet."""
        self._returned: Batch | None = None
        """A batch the store turned down, found by `take_batch`, for `returned_batch` to give."""

    def take_batch(self, tx: "Transaction", batch: Batch, layout: Layout, delimiter: str, counts: ImportCounts) -> bool:
        """A batch of new contacts is created column by column, each column in a few C-level
        calls: exactly what `apply` makes of each row (tested equal in
        tests/handlers/test_batched_imports.py). The shape (`_new_contacts`): plain records;
        required cells filled and no UNSET; phones, emails and opt-out values valid; custom
        values short enough; no contact ID, CRM ID or phone twice in the batch or stored
        already. Any other batch goes row by row (and so does a batch with a recognised record:
        `run` does not offer it)."""
        if not self.options.create:
            return False  # every row must find its contact
        taken = self._new_contacts(batch, layout, delimiter)
        if taken is None:
            return False
        columns, custom = taken
        digests = self._text_digests.many(batch.texts)
        if self._taken is not None:
            self._returned = self.returned_batch(tx, counts)  # the store's word on the last batch
            if self._returned is not None:
                return False  # that one goes row by row first, then this one
        writes = tx.contacts.writes()
        # Where the store checks the keys itself, a taken one turns the batch down later
        # (`returned_batch`); elsewhere they are looked up first.
        if not writes.checked_later and self._stored_already(tx, columns):
            return False
        keys = writes.create_all(self.partner, columns, custom)
        self._digests.keep_all(digests, keys)
        if writes.checked_later:
            self._taken = (batch, len(keys), self._changed)
        self._changed = True
        counts.rows += len(keys)
        counts.created += len(keys)
        return True

    def _new_contacts(
        self, batch: Batch, layout: Layout, delimiter: str
    ) -> tuple[dict[str, list[Any]], list[Any]] | None:
        """The batch as the columns of new contacts and their custom fields, or None when a
        record is not of the shape `take_batch` takes."""
        if batch.odd:
            return None
        records = [text.split(delimiter) for text in batch.texts]
        if set(map(len, records)) != {layout.width}:
            return None
        by_position = list(zip(*records, strict=True))
        cells = {key: list[Any](map(str.strip, by_position[position])) for key, position in layout.present}
        if any(UNSET in column for column in cells.values()) or any("" in cells[name] for name in REQUIRED):
            return None
        size = len(records)
        contact_ids = cells["contact_id"]
        phones = phones_to_e164(cells["mobile_number"], self.options.phone_region)
        crm_ids = [crm_id or None for crm_id in cells.get("crm_id", ())] or [None] * size
        given_crm_ids = [crm_id for crm_id in crm_ids if crm_id]
        if None in phones or not _distinct(contact_ids) or not _distinct(phones) or not _distinct(given_crm_ids):
            return None
        optional = self._batch_optional(cells, size)
        custom = self._batch_custom(cells, size)
        if optional is None or custom is None:
            return None
        columns = {"contact_id": contact_ids, "source_hash": self._source_hashes(records),
                   "first_name": cells["first_name"], "last_name": cells["last_name"], "mobile_number": phones,
                   "crm_id": crm_ids, **optional}  # fmt: skip
        return columns, custom

    def _batch_optional(self, cells: dict[str, Any], size: int) -> dict[str, list[Any]] | None:
        """The optional fields of a batch of new contacts (a field not mapped: None), or None
        when a value is not valid: the batch then goes row by row, where it is reported."""
        emails = self._batch_emails(cells.get("email"), size)
        opted_out = self._batch_opt_out(cells.get("opt_out"), size)
        languages = self._batch_languages(cells.get("language"), size)
        statuses: dict[str, list[Any]] = {}
        for field in CHANNEL_STATUSES.values():
            column = self._batch_statuses(cells.get(field), size)
            if column is None:
                return None
            statuses[field] = column
        if emails is None or opted_out is None or languages is None:
            return None
        return {"email": emails, "opted_out": opted_out, "language": languages, **statuses,
                "staff_id": [staff_id or None for staff_id in cells.get("staff_id", ())] or [None] * size,
                "preferred_name": [name or None for name in cells.get("preferred_name", ())] or [None] * size}  # fmt: skip

    @staticmethod
    def _batch_statuses(column: list[str] | None, size: int) -> list[Any] | None:
        """New contacts may be opted in or out; a paused or unknown status goes row by row."""
        if column is None:
            return [None] * size
        known = {cell: messaging_status(cell) if cell else None for cell in set(column)}  # a few distinct values
        if any((status is None and cell) or status == "paused" for cell, status in known.items()):
            return None
        return list(map(known.__getitem__, column))

    @staticmethod
    def _batch_languages(column: list[str] | None, size: int) -> list[Any] | None:
        if column is None:
            return [None] * size
        known = {cell: language_code(cell) if cell else None for cell in set(column)}  # a few distinct values
        if any(code is None and cell for cell, code in known.items()):
            return None
        return list(map(known.__getitem__, column))

    def _stored_already(self, tx: "Transaction", columns: dict[str, Any]) -> bool:
        """True when a contact ID, phone or CRM ID of the batch belongs to a stored contact."""
        given_crm_ids = [crm_id for crm_id in columns["crm_id"] if crm_id]
        return bool(
            tx.contacts.find(self.partner, "contact_id", columns["contact_id"])
            or tx.contacts.find(self.partner, "mobile_number", columns["mobile_number"])
            or (given_crm_ids and tx.contacts.find(self.partner, "crm_id", given_crm_ids))
        )

    def returned_batch(self, tx: "Transaction", counts: ImportCounts) -> Batch | None:
        """The batch `take_batch` took last, when one of its contact IDs, CRM IDs or phones
        turned out to be stored already: the store wrote none of it, and it goes row by row."""
        if self._returned is not None:
            returned, self._returned = self._returned, None
            return returned
        if self._taken is None:
            return None
        batch, created, changed = self._taken
        self._taken = None
        try:
            tx.contacts.writes().settle()
        except KeyTaken:
            self._digests.take_back(created)
            self._changed = changed
            counts.rows -= created
            counts.created -= created
            return batch
        return None

    def _batch_emails(self, column: list[str] | None, size: int) -> list[Any] | None:
        """Each row's email to store (None: none given), or None when one is not valid."""
        if column is None:
            return [None] * size
        given = [email for email in column if email]
        normalized = iter(normalized_emails(given))
        emails = [next(normalized) if email else None for email in column]
        return None if len(given) != sum(email is not None for email in emails) else emails

    def _batch_opt_out(self, column: list[str] | None, size: int) -> list[Any] | None:
        """Each new contact's opt-out, or None when a cell is neither value."""
        rule = self.options.opt_out
        if rule is None or column is None:
            return [False] * size
        meaning = dict.fromkeys(rule.opted_in, False) | dict.fromkeys(rule.opted_out, True)
        meaning[""] = rule.empty == "opt_out"  # "keep" keeps a new contact opted in
        values = list(map(meaning.get, map(str.lower, column)))
        return None if None in values else values

    def _batch_custom(self, cells: dict[str, Any], size: int) -> list[Any] | None:
        """Each new contact's custom fields as (field, value) pairs, or None when one is too long."""
        present = [(c.field, cells[f"custom:{c.field}"]) for c in self.options.custom if f"custom:{c.field}" in cells]
        if not present:
            return [()] * size
        if any(max(map(len, values)) > MAX_CUSTOM_LENGTH for _, values in present):
            return None
        kinds = {c.field: c.type for c in self.options.custom}
        typed = []
        for name, values in present:
            if kinds[name] == "string":
                typed.append((name, values))  # stored as they came: no call per value
                continue
            try:
                typed.append((name, [custom_value(value, kinds[name]) if value else value for value in values]))
            except ValueError:
                return None  # row by row, where the field is reported
        present = typed
        names = [name for name, _ in present]
        rows = list(zip(*(values for _, values in present), strict=True))
        pairs = {
            row: tuple[Any, ...]((name, value) for name, value in zip(names, row, strict=True) if value != "")
            for row in set(rows)
        }
        return list(map(pairs.__getitem__, rows))

    def _source_hashes(self, records: list[list[str]]) -> list[bytes]:
        """`_source_hash` of each record's cells, by a `map` over C functions."""
        digest = functools.partial(hashlib.blake2b, digest_size=16, key=self._digest_key)
        try:
            return list(map(operator.methodcaller("digest"), map(digest, map(str.encode, map("\x1f".join, records)))))
        except UnicodeEncodeError:  # a lone surrogate: no decoded file has one, but be exact
            return [self._source_hash(values) for values in records]

    def recognise(self, texts: list[str]) -> list[Any] | None:
        """The key of the contact each text last wrote, for texts the feed's last import left."""
        if not self._previous:
            return None
        return self._previous.lookup(self._text_digests.many(texts))

    def still_known(self, keys: list[int]) -> bool:
        return self._digests.untouched(keys)

    def prepare(self, tx: "Transaction", rows: list[Row]) -> None:
        """Look up the contacts the rows name, by contact ID first, then by CRM ID and phone for
        the rows whose stored contact does not already carry the same cells."""
        pending = [self._facts(row) for row in rows]
        view = self._view
        view.load("contact_id", [facts.contact_id for facts in pending if facts.contact_id])
        crm_ids, phones = [], []
        for facts in pending:
            stored = view.get("contact_id", facts.contact_id) if facts.contact_id else None
            if stored is not None and stored.source_hash == facts.source_hash:
                continue  # most likely unchanged: `apply` decides, and validates only if not
            facts.validate(self.options.phone_region)
            if facts.crm_id:
                crm_ids.append(facts.crm_id)
            if facts.phone:
                phones.append(facts.phone)
        view.load("crm_id", crm_ids)
        view.load("mobile_number", phones)

    def _facts(self, row: Row) -> _RowFacts:
        facts = row.memo = _RowFacts(self._text_digests.one(row.text), self._source_hash(row.values), row.cells())
        return facts

    def apply(self, tx: "Transaction", row: Row) -> str:
        outcome = self._apply_row(self._view, row)
        if outcome != UNCHANGED:
            self._changed = True
        return outcome

    def flush(self, tx: "Transaction") -> None:
        self._view.clear()  # writes the batch
        self._settle_waiting()

    def finish(self, tx: "Transaction", counts: ImportCounts) -> None:
        version = tx.contacts.changed(self.partner) if self._changed else tx.contacts.version(self.partner)
        tx.row_digests.save(self.feed, self.partner, version, self._digests.result())

    def _remember(self, digest: bytes | None, contact: ViewedContact) -> None:
        """`contact` is now as the text of `digest` says (None: as no text says, a field was
        dropped). A contact created in this batch waits for its key; the order of what is said
        of one contact is kept."""
        if contact.key is None:
            self._waiting.append((digest, contact))
            return
        self._settle_waiting()
        if digest is None:
            self._digests.forget(contact.key)
        else:
            self._digests.keep(digest, contact.key)

    def _settle_waiting(self) -> None:
        """Record what waited for contacts that have their keys by now."""
        if not self._waiting or self._waiting[0][1].key is None:
            return
        waiting, self._waiting = self._waiting, []
        for digest, contact in waiting:
            self._remember(digest, contact)

    def _source_hash(self, values: list[str]) -> bytes:
        cells = "\x1f".join(values).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(cells, digest_size=16, key=self._digest_key).digest()

    def _apply_row(self, view: ContactView, row: Row) -> str:
        """Match the row to a contact (or none), check it, and create or update the contact."""
        facts = row.memo or self._facts(row)  # not prepared: recognised, then rewritten
        contact_id, source_hash = facts.contact_id, facts.source_hash
        by_contact_id = None
        if contact_id:
            by_contact_id = view.get("contact_id", contact_id)
            if by_contact_id is not None and by_contact_id.source_hash == source_hash:
                self._remember(facts.digest, by_contact_id)
                return UNCHANGED
        cells = facts.cells
        for name in REQUIRED:
            if change_of(cells[name]) in (KEEP, None):
                row.reject("missing-value", f"{name} ({quoted(self.options.columns[name])}) is empty")

        facts.validate(self.options.phone_region)
        crm_id, phone = facts.crm_id, facts.phone
        target = self._match(view, row, contact_id, crm_id, phone, by_contact_id)
        if target is None and not self.options.create:
            row.reject("contact-not-found", f"no contact matches contact ID {contact_id}, and this feed creates none")

        changes = {"contact_id": contact_id, "source_hash": source_hash}
        changes["first_name"] = cells["first_name"]
        changes["last_name"] = cells["last_name"]
        if phone is None:
            raw_phone = cells["mobile_number"]
            if target is None:
                row.reject("invalid-phone", f"the mobile number {quoted(raw_phone)} is not a valid phone number")
            row.partial(
                "invalid-phone",
                f"the mobile number {quoted(raw_phone)} is not a valid phone number; the stored number is kept",
            )
        else:
            self._phone(row, phone, target, changes)
        for name in ("crm_id", "email", "staff_id"):
            value = change_of(cells.get(name))
            if value is KEEP:
                continue
            if name == "email" and value is not None:
                email = normalized_email(value)
                if email is None:
                    row.partial(
                        "invalid-email", f"the email {quoted(value)} is not a valid email address; it was not stored"
                    )
                    continue
                value = email
            changes[name] = value
        self._preferred_name(row, cells, target, changes)
        self._language(row, cells, changes)
        self._messaging_statuses(row, cells, target, changes)
        opted_out = self._opt_out(row, cells, target is None)
        if opted_out is not None:
            changes["opted_out"] = opted_out
        custom = dict(target.custom) if target is not None else {}
        custom_changed = self._custom(row, cells, custom)
        if row.partial_codes:
            # Re-validate next time, so its problems are reported again until the row is fixed.
            changes["source_hash"] = None
        digest = facts.digest if changes["source_hash"] is not None else None
        if target is None:
            self._remember(digest, view.create(changes, custom))
            return CREATED
        view.update(target, changes, custom if custom_changed else None)
        self._remember(digest, target)
        return UPDATED

    def _match(self, view: ContactView, row: Row, contact_id: str, crm_id: Any, phone: Any, by_contact_id: Any) -> Any:
        """The stored contact this row is about (None: a new one), or the row is rejected."""
        by_crm = view.get("crm_id", crm_id) if crm_id else None
        by_phone = view.get("mobile_number", phone) if phone else None
        target = None
        if by_crm is not None:
            target = by_crm
            if by_phone is not None and by_phone is not target:
                row.reject(
                    "duplicate-contact",
                    f"the CRM ID {crm_id} belongs to contact {by_crm.contact_id} "
                    f"and the mobile number {phone} to contact {by_phone.contact_id}",
                )
        elif by_phone is not None:
            if crm_id and by_phone.crm_id and by_phone.crm_id != crm_id:
                row.reject(
                    "phone-match-found-but-crmId-mismatch",
                    f"mobile number {phone} belongs to a contact whose CRM ID is {by_phone.crm_id}, not {crm_id}",
                )
            if by_phone.contact_id != contact_id:
                row.reject(
                    "duplicate-contact",
                    f"the mobile number {phone} belongs to contact {by_phone.contact_id}, not {contact_id}",
                )
            target = by_phone
        elif by_contact_id is not None:
            if crm_id and by_contact_id.crm_id and by_contact_id.crm_id != crm_id:
                row.reject(
                    "contactId-match-found-but-crmId-mismatch",
                    f"contact {contact_id} has CRM ID {by_contact_id.crm_id}, not {crm_id}",
                )
            target = by_contact_id
        if target is not None and by_contact_id is not None and by_contact_id is not target:
            matched_by = f"CRM ID {crm_id}" if target is by_crm else f"mobile number {phone}"
            row.reject(
                "duplicate-contact", f"the {matched_by} belongs to contact {target.contact_id}, not {contact_id}"
            )
        return target

    @staticmethod
    def _phone(row: Row, phone: str, target: Any, changes: dict[str, Any]) -> None:
        """Seed 001: the store keeps each contact's previous number, and a row holding it does
        not put it back (the person changed it since the partner's system last looked):
        `contact-out-of-sync`, the current number kept, the rest of the row applied."""
        current = target.mobile_number if target is not None else None
        if target is not None and phone != current and phone == target.previous_mobile_number:
            row.partial(
                "contact-out-of-sync",
                f"the mobile number {phone} is contact {target.contact_id}'s previous number; the current one, "
                f"{current}, is kept",
            )
            return
        changes["mobile_number"] = phone
        if current is not None and phone != current:
            changes["previous_mobile_number"] = current

    @staticmethod
    def _preferred_name(row: Row, cells: dict[str, Any], target: Any, changes: dict[str, Any]) -> None:
        """Seed 001: a preferred name is set while the contact has none; a file never changes
        or clears one (the person chose it): `invalid-preferred-name`, the old one kept."""
        value = change_of(cells.get("preferred_name"))
        if value is KEEP:
            return
        stored = target.preferred_name if target is not None else None
        if not stored:
            if value is not None:
                changes["preferred_name"] = value
        elif value != stored:
            asked = f"changed to {quoted(value)}" if value is not None else "cleared"
            row.partial(
                "invalid-preferred-name",
                f"the preferred name {quoted(stored)} is set already and may not be {asked}; it was kept",
            )

    @staticmethod
    def _messaging_statuses(row: Row, cells: dict[str, Any], target: Any, changes: dict[str, Any]) -> None:
        """Seed 001: a file may opt a contact out of a channel, never back in and never pause
        it (the person texts START or #pause); a status for a channel the contact lacks (SMS
        without a mobile number) is refused too. Each refusal: `invalid-messaging-status`."""
        has_phone = bool(changes.get("mobile_number") or (target is not None and target.mobile_number))
        for channel, field in CHANNEL_STATUSES.items():
            value = change_of(cells.get(field))
            if value is KEEP:
                continue
            stored = getattr(target, field) if target is not None else None
            status = messaging_status(value) if value is not None else "opted-in"
            problem = None
            if status is None:
                problem = f"the {channel} status {quoted(value)} is not one of: opted-in, opted-out, paused"
            elif channel == "sms" and not has_phone:
                problem = "an SMS status for a contact without a mobile number"
            elif status == "paused":
                problem = f"a file may not pause {channel} messages (the person texts #pause)"
            elif status == "opted-in" and stored in ("opted-out", "paused"):
                problem = f"a file may not opt the contact back in to {channel} messages (the person texts START)"
            if problem is not None:
                row.partial("invalid-messaging-status", f"{problem}; the {channel} status was kept")
            elif status != stored:
                changes[field] = status

    @staticmethod
    def _language(row: Row, cells: dict[str, Any], changes: dict[str, Any]) -> None:
        value = change_of(cells.get("language"))
        if value is KEEP:
            return
        if value is None:
            changes["language"] = None
            return
        code = language_code(value)
        if code is None:
            row.partial(
                "invalid-language",
                f'the language {quoted(value)} is not an ISO 639-1 code (like "en" or "es"); it was not stored',
            )
        else:
            changes["language"] = code

    def _opt_out(self, row: Row, cells: dict[str, Any], is_new: bool) -> bool | None:
        """The opt-out status to store, or None to leave it as it is."""
        rule = self.options.opt_out
        if rule is None or "opt_out" not in cells:
            return None
        cell = cells["opt_out"].lower()
        if not cell:
            if rule.empty == "keep":
                return None if not is_new else False
            return bool(rule.empty == "opt_out")
        if cell in rule.opted_out:
            return True
        if cell in rule.opted_in:
            return False
        row.partial(
            "invalid-messaging-status",
            f"the value {quoted(cells['opt_out'])} in {quoted(rule.column)} is neither an opted-in nor an opted-out value",
        )
        return None

    def _custom(self, row: Row, cells: dict[str, Any], custom: dict[str, Any]) -> bool:
        changed = False
        too_long = []
        for field in self.options.custom:
            value = change_of(cells.get(f"custom:{field.field}"))
            if value is KEEP:
                continue
            if value is None:
                changed |= custom.pop(field.field, None) is not None
                continue
            if len(value) > MAX_CUSTOM_LENGTH:
                too_long.append(field.field)
                continue
            try:
                typed = custom_value(value, field.type)
            except ValueError as exc:
                row.partial("invalid-attribute-data", f"{field.field}: {exc}; the field was dropped")
                continue
            if custom.get(field.field) != typed:
                custom[field.field] = typed
                changed = True
        if too_long:
            row.partial(
                "custom-values-too-long",
                f"values longer than {MAX_CUSTOM_LENGTH} characters were not stored: {', '.join(too_long)}",
            )
        return changed
