"""The contacts import as dropd ran it before imports were batched (commit bb3851f): one row
at a time, up to three lookups and a write per row, no digest shortcut. The methods below are
that commit's, verbatim; `_RowAtATime` gives them the per-row repository calls they made, over
the store's batch API (one value per lookup, each write at once). The batched import must
leave the store and the error file exactly as this does (tests/handlers/test_batched_imports.py).
"""

from daemon.text import quoted
from handlers.base import CREATED, KEEP, UNCHANGED, UPDATED
from handlers.contacts import MAX_CUSTOM_LENGTH, REQUIRED, ContactsImport
from handlers.validation import normalized_email, phone_to_e164


class _RowAtATime:
    def __init__(self, contacts):
        self._contacts = contacts
        self._writes = contacts.writes()

    def _one(self, partner, field, value):
        found = self._contacts.find(partner, field, [value])
        return found[0] if found else None

    def by_contact_id(self, partner, contact_id):
        return self._one(partner, "contact_id", contact_id)

    def by_crm_id(self, partner, crm_id):
        return self._one(partner, "crm_id", crm_id)

    def by_phone(self, partner, phone):
        return self._one(partner, "mobile_number", phone)

    def create(self, partner, fields, custom):
        self._writes.create(partner, fields, custom)
        self._writes.flush()

    def update(self, key, fields, custom=None):
        self._writes.update(key, fields, custom)
        self._writes.flush()


class ReferenceContactsImport(ContactsImport):
    def take_batch(self, tx, batch, layout, delimiter, counts) -> bool:
        return False  # every row by itself

    def returned_batch(self, tx, counts):
        return None

    def begin(self, tx, header):
        import hashlib

        tx.contacts.declare_custom_fields(
            self.partner, [(c.field, c.mergeable, c.visible) for c in self.options.custom]
        )
        self._digest_key = hashlib.blake2b(
            self.fingerprint + "\x1f".join(header).encode("utf-8", "surrogatepass")
        ).digest()
        self._changed = False

    def recognise(self, texts):
        return None  # no shortcut: every row goes its whole way

    def prepare(self, tx, rows):
        pass

    def apply(self, tx, row):
        outcome = self._apply_row(_RowAtATime(tx.contacts), row)
        if outcome != UNCHANGED:
            self._changed = True
        return outcome

    def flush(self, tx):
        pass

    def finish(self, tx, counts):
        if self._changed:
            tx.contacts.changed(self.partner)

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
                row.reject("missing-value", f"{name} ({quoted(self.options.columns[name])}) is empty")

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
                row.reject("invalid-phone", f"the mobile number {quoted(raw_phone)} is not a valid phone number")
            row.partial(
                "invalid-phone",
                f"the mobile number {quoted(raw_phone)} is not a valid phone number; the stored number is kept",
            )
        else:
            self._phone(row, phone, target, changes)  # seed 001's previous-number rule, added since
        for name in ("crm_id", "email", "staff_id"):
            value = row.change(name)
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
        if target is not None and by_contact_id is not None and by_contact_id.key != target.key:
            matched_by = f"CRM ID {crm_id}" if target is by_crm else f"mobile number {phone}"
            row.reject(
                "duplicate-contact", f"the {matched_by} belongs to contact {target.contact_id}, not {contact_id}"
            )
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
            f"the value {quoted(row.cell('opt_out'))} in {quoted(rule.column)} is neither an opted-in nor an opted-out value",
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
