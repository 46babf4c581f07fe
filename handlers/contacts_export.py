"""The contacts export (seed 000): one row per contact of the partner changed since the last
delivered export of this feed (every contact on its first run, or each run with `full = true`).

Columns, in this order: crm_id, admithub_id (the contact's own key in dropd's store),
first_name, last_name, preferred_name, mobile_number, email, language, messaging_status_sms,
messaging_status_web_bot, opted_out (true/false), created, updated (UTC, ISO 8601), then every
custom field the partner's feeds declared, by its name, in name order. Values are written in
one stable form: booleans true/false, numbers as stored, dates YYYY-MM-DD.

The watermark is the time of the last change the delivered export held (epoch milliseconds):
changes stored while an export runs go out in the next one. Contacts imports and this
export's `settle` take the same lock, so a snapshot never splits an import.
"""

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers import option_values as v
from handlers.base import ExportKind, OptionReader
from handlers.conversations import utc_text

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

COLUMNS = (
    "crm_id", "admithub_id", "first_name", "last_name", "preferred_name", "mobile_number", "email", "language",
    "messaging_status_sms", "messaging_status_web_bot", "opted_out", "created", "updated",
)  # fmt: skip


@dataclass(frozen=True)
class ContactsExportOptions:
    full: bool


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
MILLISECOND = datetime.timedelta(milliseconds=1)


def position_of(stamp: str | None) -> int:
    """A stored UTC stamp as a watermark position: milliseconds since the epoch (0 for none),
    in whole numbers both ways (a float would lose the last millisecond now and then)."""
    if not stamp:
        return 0
    return (datetime.datetime.fromisoformat(stamp) - EPOCH) // MILLISECOND


def stamp_of(position: int) -> str:
    """The stored stamp of a position, in the store's text form (it sorts as the times do)."""
    return (EPOCH + position * MILLISECOND).isoformat(timespec="milliseconds")


def cell(value: Any) -> Any:
    """A custom value in the file's one stable form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


class ContactsExport(ExportKind):
    kind = "contacts_export"
    watermarked = True

    @staticmethod
    def read_options(reader: OptionReader) -> ContactsExportOptions:
        return ContactsExportOptions(full=reader.take("full", v.boolean, False))

    def header(self, tx: "Transaction") -> list[str]:
        self._custom = tx.contacts.custom_field_names(self.partner)
        return [*COLUMNS, *self._custom]

    def settle(self, tx: "Transaction") -> None:
        tx.contacts.serialize_changes(self.partner)

    def upto(self, tx: "Transaction") -> int | None:
        return position_of(tx.contacts.last_change(self.partner))

    def rows(self, tx: "Transaction", after: int, upto: int | None) -> Iterator[list[Any]]:
        since = None if self.options.full or not after else stamp_of(after)
        for (key, crm_id, first_name, last_name, preferred_name, mobile_number, email, language, sms, web_bot,
             opted_out, custom, created, updated) in tx.contacts.for_export(self.partner, since, stamp_of(upto or 0)):  # fmt: skip
            values = json.loads(custom or "{}")
            yield [
                crm_id or "", key, first_name or "", last_name or "", preferred_name or "", mobile_number or "",
                email or "", language or "", sms or "", web_bot or "", "true" if opted_out else "false",
                utc_text(created), utc_text(updated), *(cell(values.get(name)) for name in self._custom),
            ]  # fmt: skip
