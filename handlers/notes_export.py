"""The notes export (seed 000's "EAB Notes"): one row per contact and day that had messages
since the last delivered export of the feed, for a CRM that keeps conversations as notes.

Columns: crm_id, admithub_id (the contact's own key), note_date (YYYY-MM-DD), subject (the
feed's `subject`, "Text conversation" by default), body: the day's messages in order, a line
each, `HH:MM <direction>: <text>`, days and times in the daemon's time zone. A body stops
before `max_body` characters and ends with "… (N more messages)". Messages are watermarked
and held back while their contact is unknown, as for the conversations export.
"""

import datetime
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any

from handlers import option_values as v
from handlers.base import OptionReader
from handlers.conversations import DIRECTIONS, MessageLogExport
from handlers.messages import CHANNELS, OUTGOING_SOURCES

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

COLUMNS = ("crm_id", "admithub_id", "note_date", "subject", "body")


@dataclass(frozen=True)
class NotesOptions:
    subject: str
    max_body: int


class NotesExport(MessageLogExport):
    kind = "notes_export"

    @staticmethod
    def read_options(reader: OptionReader) -> NotesOptions:
        return NotesOptions(
            subject=reader.take("subject", v.non_empty_text, "Text conversation"),
            max_body=reader.take("max_body", v.integer(200, 1_000_000), 10_000),
        )

    def header(self, tx: "Transaction") -> list[str]:
        return list(COLUMNS)

    def rows(self, tx: "Transaction", after: int, upto: int | None) -> Iterator[list[Any]]:
        zone = zoneinfo.ZoneInfo(self.timezone)

        def day(message: Any) -> tuple[Any, Any, datetime.date]:
            key, crm_id, timestamp = message[0], message[1], message[2]
            return key, crm_id, datetime.datetime.fromisoformat(timestamp).astimezone(zone).date()

        messages = tx.messages.for_notes(self.feed, self.partner, after, upto or 0)
        for (key, crm_id, date), group in groupby(messages, key=day):
            yield [crm_id or "", key, date.isoformat(), self.options.subject, self._body(group, zone)]

    def _body(self, messages: Iterator[Any], zone: zoneinfo.ZoneInfo) -> str:
        lines: list[str] = []
        size = 0
        left = 0
        for _key, _crm_id, timestamp, direction, text in messages:
            moment = datetime.datetime.fromisoformat(timestamp).astimezone(zone)
            line = f"{moment:%H:%M} {direction}: {' '.join(text.split())}"
            if left or size + len(line) + 1 > self.options.max_body:
                left += 1
                continue
            lines.append(line)
            size += len(line) + 1
        if left:
            lines.append(f"… ({left} more message{'s' if left != 1 else ''})")
        return "\n".join(lines)

    def delivered(self, tx: "Transaction", after: int, upto: int | None) -> dict[str, int]:
        return self._hold_back(tx, after, upto, (CHANNELS, DIRECTIONS, OUTGOING_SOURCES))
