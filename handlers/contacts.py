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

from daemon.store import utc_now
from daemon.store.row_digests import DigestTable
from handlers import option_values as v
from handlers.base import (
    FileRejected,
    ImportCounts,
    RowErrors,
    column_mapping,
    reject_missing_columns,
    well_formed,
)
from handlers.validation import normalized_email, phone_to_e164

FIELDS = ("contact_id", "first_name", "last_name", "mobile_number", "email", "staff_id", "crm_id")
REQUIRED = ("contact_id", "first_name", "last_name", "mobile_number")
UNSET = "UNSET"
MAX_CUSTOM_FIELDS = 25
MAX_CUSTOM_LENGTH = 1000
_SELECT = "SELECT id, contact_id, crm_id, mobile_number, source_hash, custom FROM contacts WHERE partner = ? AND "


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
        raise ValueError(f"{value!r} is not a region code phonenumbers knows (like \"US\" or \"GB\")")
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


class ContactsImport:
    kind = "contacts"

    @staticmethod
    def read_options(reader) -> ContactsOptions:
        """Read and check this kind's keys from the feed's table (errors name feed and key)."""
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

    def __init__(self, partner: str, feed: str, options: ContactsOptions, timezone: str = "UTC"):
        self.partner = partner
        self.feed = feed
        self.options = options
        self.fingerprint = _fingerprint(partner, options)

    # Header -------------------------------------------------------------------------------------

    def _locate(self, header: list[str]) -> None:
        positions: dict[str, int] = {}
        for index, name in enumerate(header):
            if name in positions:
                if name in self._wanted_headers():
                    raise FileRejected("duplicate-column", f"column {name!r} appears twice in the header")
                continue
            positions[name] = index
        missing = [f"{self.options.columns[name]!r} ({name})" for name in REQUIRED if self.options.columns[name] not in positions]
        missing += [
            f"{custom.column!r} (custom field {custom.field})"
            for custom in self.options.custom
            if custom.required and custom.column not in positions
        ]
        reject_missing_columns(missing)
        self.field_index = {name: positions.get(column) for name, column in self.options.columns.items()}
        opt_out = self.options.opt_out
        self.opt_out_index = positions.get(opt_out.column) if opt_out else None
        self.custom_index = [(custom.field, positions.get(custom.column)) for custom in self.options.custom]
        # The same cells under another header mean something else: the header keys every digest.
        self._digest_key = hashlib.blake2b(self.fingerprint + "\x1f".join(header).encode("utf-8", "surrogatepass")).digest()

    def _wanted_headers(self) -> set[str]:
        wanted = set(self.options.columns.values()) | {custom.column for custom in self.options.custom}
        if self.options.opt_out:
            wanted.add(self.options.opt_out.column)
        return wanted

    # Import ---------------------------------------------------------------------------------------

    def run(self, store, connection, rows, errors: RowErrors) -> ImportCounts:
        """Apply every good row through `connection` (inside the caller's transaction)."""
        self._locate(rows.header)
        self._record_custom_fields(connection)
        counts = ImportCounts()
        previous = store.row_digests(connection, self.feed, self.partner)
        applied = DigestTable(len(previous) if previous else 0)
        for row, text, values in well_formed(rows, errors, counts):
            digest = self._record_digest(text)
            if previous is not None and digest in previous:
                counts.unchanged += 1
                applied.add(digest)
                continue
            outcome, partial = self._apply_row(connection, row, values, errors)
            if outcome == "rejected":
                counts.rejected += 1
                continue
            setattr(counts, outcome, getattr(counts, outcome) + 1)
            if partial:
                counts.partial += 1
            else:
                applied.add(digest)
        version = store.partner_version(connection, self.partner)
        if counts.created or counts.updated:
            version = store.bump_partner_version(connection, self.partner)
        store.save_row_digests(connection, self.feed, self.partner, version, applied)
        return counts

    def _record_digest(self, text: str) -> int:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=self._digest_key)
        return int.from_bytes(digest.digest(), "little")

    def _record_custom_fields(self, connection) -> None:
        connection.executemany(
            "INSERT INTO custom_fields (partner, field, mergeable, visible) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (partner, field) DO UPDATE SET mergeable = excluded.mergeable, visible = excluded.visible",
            [(self.partner, c.field, int(c.mergeable), int(c.visible)) for c in self.options.custom],
        )

    def _cell(self, values, name):
        index = self.field_index.get(name)
        return values[index].strip() if index is not None else None

    def _source_hash(self, values) -> bytes:
        cells = "\x1f".join(values).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(cells, digest_size=16, key=self._digest_key).digest()

    def _apply_row(self, connection, row: int, values: list[str], errors: RowErrors) -> tuple[str, bool]:
        """Returns the outcome (created, updated, unchanged, rejected) and whether a field was dropped."""
        partial_errors = []
        contact_id = self._cell(values, "contact_id")
        source_hash = self._source_hash(values)
        by_contact_id = None
        if contact_id:
            by_contact_id = connection.execute(_SELECT + "contact_id = ?", (self.partner, contact_id)).fetchone()
            if by_contact_id is not None and by_contact_id["source_hash"] == source_hash:
                return "unchanged", False

        def reject(code, message):
            errors.reject(row, code, message, values)
            return "rejected", False

        def partial(code, message):
            partial_errors.append(code)
            errors.partial(row, code, message, values)

        for name in REQUIRED:
            cell = self._cell(values, name)
            if not cell or cell == UNSET:
                return reject("missing-value", f"{name} ({self.options.columns[name]!r}) is empty")

        crm_id = self._cell(values, "crm_id")
        crm_id = None if crm_id in ("", UNSET) else crm_id
        raw_phone = self._cell(values, "mobile_number")
        phone = phone_to_e164(raw_phone, self.options.phone_region)

        target = by_crm = None
        if crm_id:
            by_crm = connection.execute(_SELECT + "crm_id = ?", (self.partner, crm_id)).fetchone()
        by_phone = connection.execute(_SELECT + "mobile_number = ?", (self.partner, phone)).fetchone() if phone else None
        if by_crm is not None:
            target = by_crm
            if by_phone is not None and by_phone["id"] != target["id"]:
                return reject("duplicate-contact", f"mobile number {phone} belongs to contact {by_phone['contact_id']}")
        elif by_phone is not None:
            if crm_id and by_phone["crm_id"] and by_phone["crm_id"] != crm_id:
                return reject(
                    "phone-match-found-but-crmId-mismatch",
                    f"mobile number {phone} belongs to a contact whose CRM ID is {by_phone['crm_id']}, not {crm_id}",
                )
            if by_phone["contact_id"] != contact_id:
                return reject("duplicate-contact", f"mobile number {phone} belongs to contact {by_phone['contact_id']}")
            target = by_phone
        elif by_contact_id is not None:
            if crm_id and by_contact_id["crm_id"] and by_contact_id["crm_id"] != crm_id:
                return reject(
                    "contactId-match-found-but-crmId-mismatch",
                    f"contact {contact_id} has CRM ID {by_contact_id['crm_id']}, not {crm_id}",
                )
            target = by_contact_id
        if target is not None and by_contact_id is not None and by_contact_id["id"] != target["id"]:
            return reject("duplicate-contact", f"contact ID {contact_id} belongs to another contact")

        changes = {"contact_id": contact_id, "source_hash": source_hash}
        for name in ("first_name", "last_name"):
            changes[name] = self._cell(values, name)
        if phone is None:
            if target is None:
                return reject("invalid-phone", f"{raw_phone!r} is not a valid mobile number")
            partial("invalid-phone", f"{raw_phone!r} is not a valid mobile number; the stored number is kept")
        else:
            changes["mobile_number"] = phone
        if self.field_index.get("crm_id") is not None:
            cell = self._cell(values, "crm_id")
            if cell == UNSET:
                changes["crm_id"] = None
            elif cell:
                changes["crm_id"] = cell
        for name in ("email", "staff_id"):
            cell = self._cell(values, name)
            if cell == UNSET:
                changes[name] = None
            elif cell:
                if name == "email":
                    email = normalized_email(cell)
                    if email is None:
                        partial("invalid-email", f"{cell!r} is not a valid email address; it was not stored")
                        continue
                    cell = email
                changes[name] = cell
        opted_out = self._opt_out(values, target is None, partial)
        if opted_out is not None:
            changes["opted_out"] = int(opted_out)
        custom = json.loads(target["custom"]) if target is not None else {}
        custom_changed = self._custom(values, custom, partial)

        if partial_errors:
            # Re-validate next time, so its problems are reported again until the row is fixed.
            changes["source_hash"] = None
        now = utc_now()
        if target is None:
            changes.setdefault("opted_out", 0)
            changes.update(partner=self.partner, custom=json.dumps(custom), created_at=now, updated_at=now)
            names = ", ".join(changes)
            connection.execute(
                f"INSERT INTO contacts ({names}) VALUES ({', '.join('?' * len(changes))})", tuple(changes.values())
            )
            return "created", bool(partial_errors)
        if custom_changed:
            changes["custom"] = json.dumps(custom)
        changes["updated_at"] = now
        assignments = ", ".join(f"{name} = ?" for name in changes)
        connection.execute(f"UPDATE contacts SET {assignments} WHERE id = ?", (*changes.values(), target["id"]))
        return "updated", bool(partial_errors)

    def _opt_out(self, values, is_new: bool, partial) -> bool | None:
        """The opt-out status to store, or None to leave it as it is."""
        rule = self.options.opt_out
        if rule is None or self.opt_out_index is None:
            return None
        cell = values[self.opt_out_index].strip().lower()
        if not cell:
            if rule.empty == "keep":
                return None if not is_new else False
            return rule.empty == "opt_out"
        if cell in rule.opted_out:
            return True
        if cell in rule.opted_in:
            return False
        partial("invalid-messaging-status", f"{values[self.opt_out_index]!r} in {rule.column!r} is neither an opted-in nor an opted-out value")
        return None

    def _custom(self, values, custom: dict, partial) -> bool:
        changed = False
        too_long = []
        for name, index in self.custom_index:
            if index is None:
                continue
            cell = values[index].strip()
            if not cell:
                continue
            if cell == UNSET:
                changed |= custom.pop(name, None) is not None
            elif len(cell) > MAX_CUSTOM_LENGTH:
                too_long.append(name)
            elif custom.get(name) != cell:
                custom[name] = cell
                changed = True
        if too_long:
            partial(
                "custom-values-too-long",
                f"values longer than {MAX_CUSTOM_LENGTH} characters were not stored: {', '.join(too_long)}",
            )
        return changed
