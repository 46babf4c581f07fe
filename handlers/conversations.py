"""The conversations export: one row per message of the organisation's log since the last
delivered export, for the partner's CRM.

Columns, in this order: crm_id, admithub_id (the contact's key in dropd's store), first_name,
last_name, channel, campaign_id, campaign_name, timestamp (UTC, ISO 8601), incoming, outgoing
(the body, in the column of its direction), outgoing_source, media (a JSON list), script_id,
script_name. A message keeps its contact by the contact's own key, so a contact whose ID
changes keeps its messages; a message whose contact is not known yet is held back (the run
says how many: `unknown-contact`) and goes out with the first export after its contact. Filters: `channels`, `directions` and `outgoing_sources` (which applies to
outgoing messages), each at least one value; all of them when not given.
"""

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers import option_values as v
from handlers.base import ExportKind, OptionReader
from handlers.messages import CHANNELS, OUTGOING_SOURCES

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

COLUMNS = (
    "crm_id", "admithub_id", "first_name", "last_name", "channel", "campaign_id", "campaign_name",
    "timestamp", "incoming", "outgoing", "outgoing_source", "media", "script_id", "script_name",
)  # fmt: skip
DIRECTIONS = ("incoming", "outgoing")


@dataclass(frozen=True)
class ConversationsOptions:
    channels: tuple[str, ...]
    directions: tuple[str, ...]
    outgoing_sources: tuple[str, ...]


def utc_text(stamp: str | None) -> str:
    """A stored time as UTC ISO 8601 to the second, like 2026-11-27T08:00:00Z."""
    if not stamp:
        return ""
    if len(stamp) == 25 and stamp.endswith("+00:00") and stamp[10] == "T":
        return stamp[:19] + "Z"  # already UTC to the second, as the imports store it
    moment = datetime.datetime.fromisoformat(stamp).astimezone(datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def media_list(value: str | None) -> str:
    """The media cell as a JSON list: a JSON list as it came, else the URLs split on spaces or commas."""
    if not value:
        return "[]"
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, list):
        return json.dumps([str(item) for item in parsed])
    return json.dumps([item for item in value.replace(",", " ").split() if item])


class MessageLogExport(ExportKind):
    """What the exports of the organisation's message log share: the message positions as
    the watermark, contacts tied to messages before the snapshot, and messages whose contact
    is not known yet held back for the feed's next runs."""

    watermarked = True

    def settle(self, tx: "Transaction") -> None:
        tx.messages.serialize_positions(self.partner)
        tx.messages.tie_contacts(self.partner)

    def upto(self, tx: "Transaction") -> int | None:
        return tx.messages.last_position(self.partner)

    def _hold_back(
        self, tx: "Transaction", after: int, upto: int | None, filters: tuple[tuple[str, ...], ...]
    ) -> dict[str, int]:
        """Messages whose contact is not known (yet) were left out: held back for this feed's
        next runs, never sent with a blank contact."""
        tx.messages.hold_back(self.feed, self.partner, after, upto or 0, *filters)
        held = tx.messages.held_back(self.feed)
        return {"unknown_contact": held} if held else {}


class ConversationsExport(MessageLogExport):
    kind = "conversations_export"

    @staticmethod
    def read_options(reader: OptionReader) -> ConversationsOptions:
        return ConversationsOptions(
            channels=reader.take("channels", v.choice_list(*CHANNELS), CHANNELS),
            directions=reader.take("directions", v.choice_list(*DIRECTIONS), DIRECTIONS),
            outgoing_sources=reader.take("outgoing_sources", v.choice_list(*OUTGOING_SOURCES), OUTGOING_SOURCES),
        )

    def header(self, tx: "Transaction") -> list[str]:
        return list(COLUMNS)

    def rows(self, tx: "Transaction", after: int, upto: int | None) -> Iterator[list[Any]]:
        options = self.options
        found = tx.messages.for_export(
            self.feed, self.partner, after, upto or 0, options.channels, options.directions, options.outgoing_sources
        )
        for (_position, crm_id, contact_key, first_name, last_name, channel, campaign_id, campaign_name, timestamp,
             direction, body, outgoing_source, media, script_id, script_name) in found:  # fmt: skip
            incoming, outgoing = (body, "") if direction == "incoming" else ("", body)
            yield [
                crm_id or "", contact_key or "", first_name or "", last_name or "", channel, campaign_id or "",
                campaign_name or "", utc_text(timestamp), incoming, outgoing, outgoing_source or "",
                media_list(media), script_id or "", script_name or "",
            ]  # fmt: skip

    def delivered(self, tx: "Transaction", after: int, upto: int | None) -> dict[str, int]:
        options = self.options
        return self._hold_back(tx, after, upto, (options.channels, options.directions, options.outgoing_sources))
