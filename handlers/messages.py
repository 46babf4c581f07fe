"""The messages import: the organisation's own message log, the source of conversation exports.

Columns (header names, fixed): contact_id, channel (web | twilio), timestamp, incoming or
outgoing (the body; exactly one), outgoing_source (AI, Live Chat, Campaign Script, Other;
outgoing messages only), campaign_id, campaign_name, script_id, script_name, media, and
optionally message_id. Messages are deduplicated by message_id when the file has one, else by
contact, timestamp, direction and a hash of the body, so a re-sent log adds nothing.
"""

import hashlib
from typing import TYPE_CHECKING, Any

from daemon.text import quoted
from handlers.base import CREATED, UNCHANGED, Column, ImportKind, OptionReader, Row
from handlers.typed_values import parse_date

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

REQUIRED_COLUMNS = ("contact_id", "channel", "timestamp", "incoming", "outgoing")
OPTIONAL_COLUMNS = (
    "outgoing_source",
    "campaign_id",
    "campaign_name",
    "script_id",
    "script_name",
    "media",
    "message_id",
)
CHANNELS = ("web", "twilio")
OUTGOING_SOURCES = ("AI", "Live Chat", "Campaign Script", "Other")


class MessagesImport(ImportKind):
    kind = "messages"

    @staticmethod
    def read_options(reader: OptionReader) -> None:
        """Messages feeds have no keys of their own: the columns are fixed."""
        return None

    def columns(self) -> list[Column]:
        return [Column(name, name, required=name in REQUIRED_COLUMNS) for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]

    def begin(self, tx: "Transaction", header: list[str]) -> None:
        tx.messages.serialize_positions(self.partner)

    def apply(self, tx: "Transaction", row: Row) -> str:
        return CREATED if tx.messages.add(self.partner, self._message(row)) else UNCHANGED

    def _message(self, row: Row) -> dict[str, Any]:
        # Every column of a messages file is required (`columns`): each cell is there.
        contact_id, channel = row.cell("contact_id") or "", (row.cell("channel") or "").lower()
        incoming, outgoing = row.cell("incoming") or "", row.cell("outgoing") or ""
        if not contact_id:
            row.reject("missing-value", "contact_id is empty")
        if channel not in CHANNELS:
            row.reject("invalid-attribute-data", f"channel {quoted(channel)} is not one of: {', '.join(CHANNELS)}")
        try:
            timestamp = parse_date(row.cell("timestamp") or "", self.timezone).isoformat()
        except ValueError as exc:
            row.reject("invalid-attribute-data", f"timestamp: {exc}")
        if bool(incoming) == bool(outgoing):
            row.reject("missing-value", "a message has exactly one of incoming and outgoing")
        direction, body = ("incoming", incoming) if incoming else ("outgoing", outgoing)
        source = row.cell("outgoing_source") or None
        if direction == "outgoing" and source not in OUTGOING_SOURCES:
            given = (
                f"outgoing_source {quoted(source)} is not one of" if source else "outgoing_source is empty, not one of"
            )
            row.partial("invalid-attribute-data", f"{given}: {', '.join(OUTGOING_SOURCES)}; stored as Other")
            source = "Other"
        if direction == "incoming":
            source = None
        key = (
            row.cell("message_id")
            or hashlib.sha256("\x1f".join((contact_id, timestamp, direction, body)).encode()).hexdigest()
        )
        message = dict(
            message_key=key, contact_id=contact_id, channel=channel, timestamp=timestamp, direction=direction,
            body=body, outgoing_source=source,
        )  # fmt: skip
        for name in ("campaign_id", "campaign_name", "script_id", "script_name", "media"):
            message[name] = row.cell(name) or None
        return message
