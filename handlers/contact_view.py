"""The partner's contacts that one batch of rows names, as the batch's earlier rows left them.

A contacts import looks up each batch's contact IDs, CRM IDs and phones in three statements
(`load`) instead of three per row, and queues its writes (`ContactWrites`) until the batch
ends. Rows are still applied one at a time in file order, so every row must see what the rows
before it in the same batch did: the view keeps one object per stored contact and moves it
between its three indexes as rows change its keys, so a lookup answers exactly what the store
would answer had each earlier row been written at once.

Rules that keep that true:
- everything a lookup can be asked about a batch is loaded before the batch is applied, when
  nothing is queued, so the store and the view agree;
- a value not loaded is looked up alone, after the queue is written;
- a contact created in this batch has no store key until the queue is written; writing it
  gives every such contact its key, and updating one writes the queue first.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.store.records import StoredContact
    from daemon.store.repositories import Contacts, ContactWrites

MATCH_FIELDS = ("contact_id", "crm_id", "mobile_number")


@dataclass(eq=False)
class ViewedContact:
    key: int | None
    """The store's key; None for a contact created in this batch and not yet written."""
    contact_id: str | None
    crm_id: str | None
    mobile_number: str | None
    source_hash: bytes | None
    custom: dict[str, Any]
    preferred_name: str | None = None
    previous_mobile_number: str | None = None
    messaging_status_sms: str | None = None
    messaging_status_web_bot: str | None = None


class ContactView:
    def __init__(self, contacts: "Contacts", writes: "ContactWrites", partner: str):
        self._contacts = contacts
        self._writes = writes
        self._partner = partner
        self._created: list[ViewedContact] = []
        """Contacts created and not written yet."""
        self.clear()

    def clear(self) -> None:
        """Write what is queued and forget the batch (memory stays that of one batch)."""
        self.write()
        self._index: dict[str, dict[str, ViewedContact | None]] = {field: {} for field in MATCH_FIELDS}
        """field -> value -> the contact holding it, or None when none does."""
        self._by_key: dict[int, ViewedContact] = {}

    def write(self) -> None:
        """Write what is queued; the contacts it created get their store keys."""
        inserted = self._writes.flush()
        for contact in self._created:
            assert contact.contact_id is not None, "a contact is created with its contact ID"
            contact.key = inserted[contact.contact_id]
            self._by_key[contact.key] = contact
        self._created.clear()

    def load(self, field: str, values: Iterable[str]) -> None:
        """Look up every value of `field` not known yet, in as few statements as the store needs."""
        index = self._index[field]
        wanted = [value for value in dict.fromkeys(values) if value not in index]
        if not wanted:
            return
        for value in wanted:
            index[value] = None
        for stored in self._contacts.find(self._partner, field, wanted):
            self._adopt(stored)

    def get(self, field: str, value: str) -> ViewedContact | None:
        index = self._index[field]
        if value not in index:
            self.write()
            self.load(field, [value])
        return index[value]

    def create(self, changes: dict[str, Any], custom: dict[str, Any]) -> ViewedContact:
        self._writes.create(self._partner, changes, custom)
        contact = ViewedContact(
            None, None, None, None, changes.get("source_hash"), custom, changes.get("preferred_name")
        )
        self._created.append(contact)
        for field in MATCH_FIELDS:
            if field in changes:
                self._move(contact, field, changes[field])
        return contact

    def update(self, contact: ViewedContact, changes: dict[str, Any], custom: dict[str, Any] | None) -> None:
        if contact.key is None:
            self.write()
        assert contact.key is not None, "writing the queue gives every contact its key"
        self._writes.update(contact.key, changes, custom)
        for field in MATCH_FIELDS:
            if field in changes:
                self._move(contact, field, changes[field])
        if "source_hash" in changes:
            contact.source_hash = changes["source_hash"]
        if "preferred_name" in changes:
            contact.preferred_name = changes["preferred_name"]
        for field in ("previous_mobile_number", "messaging_status_sms", "messaging_status_web_bot"):
            if field in changes:
                setattr(contact, field, changes[field])
        if custom is not None:
            contact.custom = custom

    def _adopt(self, stored: "StoredContact") -> None:
        """A contact the store returned: the batch's object for it, indexed by its keys."""
        contact = self._by_key.get(stored.key)
        if contact is None:
            contact = ViewedContact(
                stored.key, stored.contact_id, stored.crm_id, stored.mobile_number, stored.source_hash, stored.custom,
                stored.preferred_name, stored.previous_mobile_number, stored.messaging_status_sms,
                stored.messaging_status_web_bot,
            )  # fmt: skip
            self._by_key[stored.key] = contact
        for field in MATCH_FIELDS:
            value = getattr(contact, field)
            if value is not None:
                self._index[field][value] = contact

    def _move(self, contact: ViewedContact, field: str, value: str | None) -> None:
        """`contact` now holds `value` in `field`: its old value belongs to nobody."""
        index = self._index[field]
        old = getattr(contact, field)
        if old is not None and index.get(old) is contact:
            index[old] = None
        setattr(contact, field, value)
        if value is not None:
            index[value] = contact
