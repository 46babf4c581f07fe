"""The conversations export: one row per message of the organisation's log since the last
delivered export, for the partner's CRM.

Columns, in this order: crm_id, admithub_id (the contact's key in dropd's store), first_name,
last_name, channel, campaign_id, campaign_name, timestamp (UTC, ISO 8601), incoming, outgoing
(the body, in the column of its direction), outgoing_source, media (a JSON list), script_id,
script_name. Filters: `channels`, `directions` and `outgoing_sources` (which applies to
outgoing messages), each at least one value; all of them when not given.
"""

import datetime
import json
from dataclasses import dataclass

from handlers import option_values as v
from handlers.base import ExportKind
from handlers.messages import CHANNELS, OUTGOING_SOURCES

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
    """ "2026-11-27T08:00:00Z" from what the store keeps."""
    if not stamp:
        return ""
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


class ConversationsExport(ExportKind):
    kind = "conversations_export"
    watermarked = True

    @staticmethod
    def read_options(reader) -> ConversationsOptions:
        return ConversationsOptions(
            channels=reader.take("channels", v.choice_list(*CHANNELS), CHANNELS),
            directions=reader.take("directions", v.choice_list(*DIRECTIONS), DIRECTIONS),
            outgoing_sources=reader.take("outgoing_sources", v.choice_list(*OUTGOING_SOURCES), OUTGOING_SOURCES),
        )

    def header(self) -> list[str]:
        return list(COLUMNS)

    def upto(self, tx) -> int | None:
        return tx.messages.last_position(self.partner)

    def rows(self, tx, after: int, upto: int | None):
        options = self.options
        for m in tx.messages.for_export(
            self.partner, after, upto, options.channels, options.directions, options.outgoing_sources
        ):
            incoming = m["body"] if m["direction"] == "incoming" else ""
            outgoing = m["body"] if m["direction"] == "outgoing" else ""
            yield [
                m["crm_id"] or "", m["contact_key"] or "", m["first_name"] or "", m["last_name"] or "", m["channel"],
                m["campaign_id"] or "", m["campaign_name"] or "", utc_text(m["timestamp"]), incoming, outgoing,
                m["outgoing_source"] or "", media_list(m["media"]), m["script_id"] or "", m["script_name"] or "",
            ]  # fmt: skip
