"""The contacts import: column mapping, per-row validation, matching, opt-out, custom fields.

Matching order: by CRM ID, then by phone (E.164), then by the partner's contact ID, else a
new contact. A row whose phone or contact ID belongs to a different contact than the one it
matched is rejected (`duplicate-contact`); a match whose CRM ID differs from the row's is
rejected (`phone-match-found-but-crmId-mismatch`, `contactId-match-found-but-crmId-mismatch`).

Two shortcuts keep re-imports cheap, both exact:
- a record whose raw text the feed's previous import applied cleanly, when no run has
  changed the partner's contacts since, is unchanged: it is not even parsed;
- otherwise, a row whose contact still carries the hash of the same mapped cells is
  unchanged and skips validation and matching.
Rows with partial errors are in neither, so their errors are reported again each time.
"""

import hashlib
import json
from dataclasses import dataclass

import phonenumbers

from daemon.store.row_digests import DigestTable
from handlers import option_values as v
from handlers.base import (
    CREATED,
    KEEP,
    UNCHANGED,
    UPDATED,
    Column,
    FeedSetup,
    ImportKind,
    column_mapping,
)
from handlers.validation import normalized_email, phone_to_e164

FIELDS = ("contact_id", "first_name", "last_name", "mobile_number", "email", "staff_id", "crm_id")
REQUIRED = ("contact_id", "first_name", "last_name", "mobile_number")
MAX_CUSTOM_FIELDS = 25
MAX_CUSTOM_LENGTH = 1000


@dataclass(frozen=True)
class OptOut:
    column: str
    opted_in: frozenset
    opted_out: frozenset
    empty: str


@dataclass(frozen=True)
class CustomField:
    field: str
    column: str
    required: bool
    mergeable: bool
    visible: bool


@dataclass(frozen=True)
class ContactsOptions:
    columns: dict
    opt_out: OptOut | None
    custom: tuple
    phone_region: str


def _region(value) -> str:
    if v.text(value).upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f'{value!r} is not a region code phonenumbers knows (like "US" or "GB")')
    return value.upper()


def _read_opt_out(reader) -> OptOut | None:
    table = reader.sub("opt_out")
    if table is None:
        return None
    lower = lambda items: frozenset(item.strip().lower() for item in items or ())  # noqa: E731
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


def _read_custom(reader) -> tuple:
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
        "custom": [[c.field, c.column] for c in options.custom],
        "region": options.phone_region,
    }
    return json.dumps(described, sort_keys=True).encode()


class ContactsImport(ImportKind):
    kind = "contacts"

    @staticmethod
    def read_options(reader) -> ContactsOptions:
        columns_table = reader.sub("columns", required=True)
        columns = None
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

    def begin(self, tx, header: list[str]) -> None:
        tx.contacts.declare_custom_fields(
            self.partner, [(c.field, c.mergeable, c.visible) for c in self.options.custom]
        )
        # The same cells under another header mean something else: the header keys every digest.
        self._digest_key = hashlib.blake2b(
            self.fingerprint + "\x1f".join(header).encode("utf-8", "surrogatepass")
        ).digest()
        self._previous = tx.row_digests.previous(self.feed, self.partner, tx.contacts.version(self.partner))
        self._applied = DigestTable(len(self._previous) if self._previous else 0)
        self._changed = False

    def unchanged(self, text: str) -> bool:
        self._digest = digest = self._record_digest(text)
        if self._previous is not None and digest in self._previous:
            self._applied.add(digest)
            return True
        return False

    def apply(self, tx, row) -> str:
        digest = self._digest  # of this record, from `unchanged`
        outcome = self._apply_row(tx.contacts, row)
        if outcome != UNCHANGED:
            self._changed = True
        if not row.partial_codes:
            self._applied.add(digest)
        return outcome

    def finish(self, tx, counts) -> None:
        version = tx.contacts.changed(self.partner) if self._changed else tx.contacts.version(self.partner)
        tx.row_digests.save(self.feed, self.partner, version, self._applied)

    def _record_digest(self, text: str) -> int:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=self._digest_key)
        return int.from_bytes(digest.digest(), "little")

    def _source_hash(self, values) -> bytes:
        cells = "\x1f".join(values).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(cells, digest_size=16, key=self._digest_key).digest()

    def _apply_row(self, contacts, row) -> str:
        """Match the row to a contact (or none), check it, and create or update the contact."""
        contact_id = row.cell("contact_id")
        source_hash = self._source_hash(row.values)
        by_contact_id = None
        if contact_id:
            by_contact_id = contacts.by_contact_id(self.partner, contact_id)
            if by_contact_id is not None and by_contact_id.source_hash == source_hash:
                return UNCHANGED
        for name in REQUIRED:
            if row.change(name) in (KEEP, None):
                row.reject("missing-value", f"{name} ({self.options.columns[name]!r}) is empty")

        crm_id = row.change("crm_id")
        crm_id = None if crm_id is KEEP else crm_id
        raw_phone = row.cell("mobile_number")
        phone = phone_to_e164(raw_phone, self.options.phone_region)
        target = self._match(contacts, row, contact_id, crm_id, phone, by_contact_id)

        changes = {"contact_id": contact_id, "source_hash": source_hash}
        for name in ("first_name", "last_name"):
            changes[name] = row.cell(name)
        if phone is None:
            if target is None:
                row.reject("invalid-phone", f"{raw_phone!r} is not a valid mobile number")
            row.partial("invalid-phone", f"{raw_phone!r} is not a valid mobile number; the stored number is kept")
        else:
            changes["mobile_number"] = phone
        for name in ("crm_id", "email", "staff_id"):
            value = row.change(name)
            if value is KEEP:
                continue
            if name == "email" and value is not None:
                email = normalized_email(value)
                if email is None:
                    row.partial("invalid-email", f"{value!r} is not a valid email address; it was not stored")
                    continue
                value = email
            changes[name] = value
        opted_out = self._opt_out(row, target is None)
        if opted_out is not None:
            changes["opted_out"] = opted_out
        custom = dict(target.custom) if target is not None else {}
        custom_changed = self._custom(row, custom)
        if row.partial_codes:
            # Re-validate next time, so its problems are reported again until the row is fixed.
            changes["source_hash"] = None
        if target is None:
            contacts.create(self.partner, changes, custom)
            return CREATED
        contacts.update(target.key, changes, custom if custom_changed else None)
        return UPDATED

    def _match(self, contacts, row, contact_id, crm_id, phone, by_contact_id):
        """The stored contact this row is about (None: a new one), or the row is rejected."""
        by_crm = contacts.by_crm_id(self.partner, crm_id) if crm_id else None
        by_phone = contacts.by_phone(self.partner, phone) if phone else None
        target = None
        if by_crm is not None:
            target = by_crm
            if by_phone is not None and by_phone.key != target.key:
                row.reject("duplicate-contact", f"mobile number {phone} belongs to contact {by_phone.contact_id}")
        elif by_phone is not None:
            if crm_id and by_phone.crm_id and by_phone.crm_id != crm_id:
                row.reject(
                    "phone-match-found-but-crmId-mismatch",
                    f"mobile number {phone} belongs to a contact whose CRM ID is {by_phone.crm_id}, not {crm_id}",
                )
            if by_phone.contact_id != contact_id:
                row.reject("duplicate-contact", f"mobile number {phone} belongs to contact {by_phone.contact_id}")
            target = by_phone
        elif by_contact_id is not None:
            if crm_id and by_contact_id.crm_id and by_contact_id.crm_id != crm_id:
                row.reject(
                    "contactId-match-found-but-crmId-mismatch",
                    f"contact {contact_id} has CRM ID {by_contact_id.crm_id}, not {crm_id}",
                )
            target = by_contact_id
        if target is not None and by_contact_id is not None and by_contact_id.key != target.key:
            row.reject("duplicate-contact", f"contact ID {contact_id} belongs to another contact")
        return target

    def _opt_out(self, row, is_new: bool) -> bool | None:
        """The opt-out status to store, or None to leave it as it is."""
        rule = self.options.opt_out
        if rule is None or not row.has("opt_out"):
            return None
        cell = row.cell("opt_out").lower()
        if not cell:
            if rule.empty == "keep":
                return None if not is_new else False
            return rule.empty == "opt_out"
        if cell in rule.opted_out:
            return True
        if cell in rule.opted_in:
            return False
        row.partial(
            "invalid-messaging-status",
            f"{row.cell('opt_out')!r} in {rule.column!r} is neither an opted-in nor an opted-out value",
        )
        return None

    def _custom(self, row, custom: dict) -> bool:
        changed = False
        too_long = []
        for field in self.options.custom:
            value = row.change(f"custom:{field.field}")
            if value is KEEP:
                continue
            if value is None:
                changed |= custom.pop(field.field, None) is not None
            elif len(value) > MAX_CUSTOM_LENGTH:
                too_long.append(field.field)
            elif custom.get(field.field) != value:
                custom[field.field] = value
                changed = True
        if too_long:
            row.partial(
                "custom-values-too-long",
                f"values longer than {MAX_CUSTOM_LENGTH} characters were not stored: {', '.join(too_long)}",
            )
        return changed
