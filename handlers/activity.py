"""The activity import: engagement events (sent, open, click, opt-out, ...) from a typed mapping.

Each source column maps to a field with a type (`string`, `boolean`, `date`). `event_id`,
`contact_id` and `time` are required; a value that does not parse is
`invalid-attribute-data`: the row is rejected when the field is the event id or time,
otherwise the field is dropped and the event kept. Events are deduplicated by event id per
partner, so a re-sent export adds nothing; events older than `import_since` (default: 7 days
before the run) are skipped and counted. An `opt-out` event opts the contact out.
"""

import datetime
import json
from dataclasses import dataclass

from daemon.store import utc_now
from handlers import option_values as v
from handlers.base import (
    ImportCounts,
    RowErrors,
    reject_missing_columns,
    well_formed,
)
from handlers.typed_values import TYPES, parse_date, parse_typed

DEFAULT_MAPPING = {
    "cID": ("contact_id", "string"),
    "_id": ("event_id", "string"),
    "mcID": ("message_contact_id", "string"),
    "message_name": ("message_name", "string"),
    "message_sent": ("message_sent", "date"),
    "action": ("action", "string"),
    "time": ("time", "date"),
    "first": ("first", "boolean"),
}
REQUIRED = ("event_id", "contact_id", "time")
DEFAULT_LOOKBACK = datetime.timedelta(days=7)


@dataclass(frozen=True)
class ActivityOptions:
    mapping: dict
    """source column -> (field, type)"""
    import_since: datetime.date | None


def _mapping(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError('must be a table of source = { field = "...", type = "string|boolean|date" }')
    mapping = {}
    for source, target in value.items():
        if not isinstance(target, dict) or set(target) - {"field", "type"} or "field" not in target:
            raise ValueError(f'{source}: write {{ field = "name", type = "string" }}')
        kind = target.get("type", "string")
        if kind not in TYPES:
            raise ValueError(f"{source}: type {kind!r} is not one of: {', '.join(TYPES)}")
        mapping[source] = (target["field"], kind)
    fields = [field for field, _ in mapping.values()]
    missing = [name for name in REQUIRED if name not in fields]
    if missing:
        raise ValueError(f"required field(s) not mapped: {', '.join(missing)}")
    for name in ("event_id", "contact_id"):
        if dict(mapping.values())[name] != "string":
            raise ValueError(f"{name} must have type string")
    if dict(mapping.values())["time"] != "date":
        raise ValueError("time must have type date")
    return mapping


def _since(value) -> datetime.date:
    try:
        return datetime.date.fromisoformat(v.text(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a date written yyyy-mm-dd") from None


class ActivityImport:
    kind = "activity"

    @staticmethod
    def read_options(reader) -> ActivityOptions:
        table = reader.sub("mapping")
        mapping = DEFAULT_MAPPING
        if table is not None:
            try:
                mapping = _mapping(table.table)
            except ValueError as exc:
                table.error("", str(exc))
        return ActivityOptions(mapping=mapping, import_since=reader.take("import_since", _since, None))

    def __init__(self, partner: str, feed: str, options: ActivityOptions, timezone: str = "UTC"):
        self.partner = partner
        self.feed = feed
        self.options = options
        self.timezone = timezone

    def _since(self) -> str:
        if self.options.import_since is not None:
            return parse_date(self.options.import_since.isoformat(), self.timezone).isoformat()
        return (datetime.datetime.now(datetime.timezone.utc) - DEFAULT_LOOKBACK).isoformat()

    def run(self, store, connection, rows, errors: RowErrors) -> ImportCounts:
        positions = {name: index for index, name in reversed(list(enumerate(rows.header)))}
        reject_missing_columns(
            [f"{source!r} ({field})" for source, (field, _) in self.options.mapping.items() if field in REQUIRED and source not in positions]
        )
        columns = [(positions[source], field, kind) for source, (field, kind) in self.options.mapping.items() if source in positions]
        since = self._since()
        counts = ImportCounts(extra={"too_old": 0, "opted_out": 0})
        for row, _text, values in well_formed(rows, errors, counts):
            event = self._event(row, values, columns, errors)
            if event is None:
                counts.rejected += 1
            elif event["time"] < since:
                counts.extra["too_old"] += 1
            else:
                self._store(connection, event, counts)
                counts.partial += errors.had_partial(row)
        if counts.extra["opted_out"]:
            store.bump_partner_version(connection, self.partner)
        return counts

    def _event(self, row, values, columns, errors: RowErrors) -> dict | None:
        event = {}
        for index, field, kind in columns:
            cell = values[index].strip()
            if not cell:
                if field in REQUIRED:
                    errors.reject(row, "missing-value", f"{field} is empty", values)
                    return None
                continue
            try:
                event[field] = parse_typed(cell, kind, self.timezone)
            except ValueError as exc:
                if field in ("event_id", "time"):
                    errors.reject(row, "invalid-attribute-data", f"{field}: {exc}", values)
                    return None
                errors.partial(row, "invalid-attribute-data", f"{field}: {exc}; the field was dropped", values)
        return event

    def _store(self, connection, event: dict, counts: ImportCounts) -> None:
        action = event.get("action", "").lower() or None
        fields = {k: val for k, val in event.items() if k not in ("event_id", "contact_id", "action", "time")}
        cursor = connection.execute(
            "INSERT OR IGNORE INTO events (partner, event_id, contact_id, action, time, fields, imported_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.partner, event["event_id"], event["contact_id"], action, event["time"], json.dumps(fields), utc_now()),
        )
        if cursor.rowcount == 0:
            counts.unchanged += 1
            return
        counts.created += 1
        if action == "opt-out":
            flipped = connection.execute(
                "UPDATE contacts SET opted_out = 1, updated_at = ?, source_hash = NULL "
                "WHERE partner = ? AND contact_id = ? AND opted_out = 0",
                (utc_now(), self.partner, event["contact_id"]),
            ).rowcount
            flipped += connection.execute(
                "UPDATE subscribers SET opted_out = 1, updated_at = ? WHERE partner = ? AND email_key = ? AND opted_out = 0",
                (utc_now(), self.partner, event["contact_id"].lower()),
            ).rowcount
            counts.extra["opted_out"] += flipped
