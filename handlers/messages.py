"""The messages import: the organisation's own message log, the source of conversation exports.

Columns (header names, fixed): contact_id, channel (web | twilio), timestamp, incoming or
outgoing (the body; exactly one), outgoing_source (AI, Live Chat, Campaign Script, Other;
outgoing messages only), campaign_id, campaign_name, script_id, script_name, media, and
optionally message_id. Messages are deduplicated by message_id when the file has one, else by
contact, timestamp, direction and a hash of the body, so a re-sent log adds nothing.
"""

import hashlib

from daemon.store import utc_now
from handlers.base import (
    ImportCounts,
    RowErrors,
    reject_missing_columns,
    well_formed,
)
from handlers.typed_values import parse_date

REQUIRED_COLUMNS = ("contact_id", "channel", "timestamp", "incoming", "outgoing")
OPTIONAL_COLUMNS = ("outgoing_source", "campaign_id", "campaign_name", "script_id", "script_name", "media", "message_id")
CHANNELS = ("web", "twilio")
OUTGOING_SOURCES = ("AI", "Live Chat", "Campaign Script", "Other")


class MessagesImport:
    kind = "messages"

    @staticmethod
    def read_options(reader) -> None:
        """Messages feeds have no keys of their own: the columns are fixed."""
        return None

    def __init__(self, partner: str, feed: str, options: None, timezone: str = "UTC"):
        self.partner = partner
        self.feed = feed
        self.timezone = timezone

    def run(self, store, connection, rows, errors: RowErrors) -> ImportCounts:
        positions = {name: index for index, name in reversed(list(enumerate(rows.header)))}
        reject_missing_columns([repr(name) for name in REQUIRED_COLUMNS if name not in positions])
        self.positions = positions
        counts = ImportCounts()
        for row, _text, values in well_formed(rows, errors, counts):
            message = self._message(row, values, errors)
            if message is None:
                counts.rejected += 1
                continue
            cursor = connection.execute(
                f"INSERT OR IGNORE INTO messages (partner, {', '.join(message)}, imported_at) "
                f"VALUES (?, {', '.join('?' * len(message))}, ?)",
                (self.partner, *message.values(), utc_now()),
            )
            if cursor.rowcount:
                counts.created += 1
            else:
                counts.unchanged += 1
            counts.partial += errors.had_partial(row)
        return counts

    def _cell(self, values, name) -> str:
        index = self.positions.get(name)
        return values[index].strip() if index is not None else ""

    def _message(self, row, values, errors: RowErrors) -> dict | None:
        def reject(code, message):
            errors.reject(row, code, message, values)

        contact_id, channel = self._cell(values, "contact_id"), self._cell(values, "channel").lower()
        incoming, outgoing = self._cell(values, "incoming"), self._cell(values, "outgoing")
        if not contact_id:
            return reject("missing-value", "contact_id is empty")
        if channel not in CHANNELS:
            return reject("invalid-attribute-data", f"channel {channel!r} is not one of: {', '.join(CHANNELS)}")
        try:
            timestamp = parse_date(self._cell(values, "timestamp"), self.timezone).isoformat()
        except ValueError as exc:
            return reject("invalid-attribute-data", f"timestamp: {exc}")
        if bool(incoming) == bool(outgoing):
            return reject("missing-value", "a message has exactly one of incoming and outgoing")
        direction, body = ("incoming", incoming) if incoming else ("outgoing", outgoing)
        source = self._cell(values, "outgoing_source") or None
        if direction == "outgoing" and source not in OUTGOING_SOURCES:
            errors.partial(
                row, "invalid-attribute-data",
                f"outgoing_source {source!r} is not one of: {', '.join(OUTGOING_SOURCES)}; stored as Other", values,
            )  # fmt: skip
            source = "Other"
        if direction == "incoming":
            source = None
        message_id = self._cell(values, "message_id")
        key = message_id or hashlib.sha256("\x1f".join((contact_id, timestamp, direction, body)).encode()).hexdigest()
        message = dict(
            message_key=key, contact_id=contact_id, channel=channel, timestamp=timestamp, direction=direction,
            body=body, outgoing_source=source,
        )  # fmt: skip
        for name in ("campaign_id", "campaign_name", "script_id", "script_name", "media"):
            message[name] = self._cell(values, name) or None
        return message
