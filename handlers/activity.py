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
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers import option_values as v
from handlers.base import CREATED, UNCHANGED, Batch, Column, ImportCounts, ImportKind, Layout, OptionReader, Row
from handlers.typed_values import TYPES, boolean_column, date_text, parse_boolean, parse_date, utc_column

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

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
_OWN_COLUMNS = ("event_id", "contact_id", "action", "time")
"""Fields stored in their own columns; the others are kept as JSON in `fields`."""
_JSON_PLAIN = re.compile(r"[ !#-\[\]-~]*")
"""Text that `json.dumps` writes as it is, between quotes: printable ASCII but " and \\."""
DEFAULT_LOOKBACK = datetime.timedelta(days=7)


@dataclass(frozen=True)
class ActivityOptions:
    mapping: dict[str, tuple[str, str]]
    """source column -> (field, type)"""
    import_since: datetime.date | None


def _mapping(value: object) -> dict[str, tuple[str, str]]:
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


def _since(value: object) -> datetime.date:
    try:
        return datetime.date.fromisoformat(v.text(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a date written yyyy-mm-dd") from None


class ActivityImport(ImportKind):
    kind = "activity"

    @staticmethod
    def read_options(reader: OptionReader) -> ActivityOptions:
        table = reader.sub("mapping")
        mapping = DEFAULT_MAPPING
        if table is not None:
            try:
                mapping = _mapping(table.table)
            except ValueError as exc:
                table.error("", str(exc))
        return ActivityOptions(mapping=mapping, import_since=reader.take("import_since", _since, None))

    def columns(self) -> list[Column]:
        return [
            Column(source, source, required=field in REQUIRED, label=field)
            for source, (field, _) in self.options.mapping.items()
        ]

    def begin(self, tx: "Transaction", header: list[str]) -> None:
        if self.options.import_since is not None:
            self._since = parse_date(self.options.import_since.isoformat(), self.timezone).isoformat()
        else:
            self._since = (datetime.datetime.now(datetime.UTC) - DEFAULT_LOOKBACK).isoformat()
        self._opted_out = 0
        self._writes = tx.events.writes()
        self._event_id_column = next(
            source for source, (field, _) in self.options.mapping.items() if field == "event_id"
        )
        self._known: set[str] = set()
        """Event ids stored before this batch (looked up in `prepare`) or added by it."""
        typed = {"string": None, "boolean": parse_boolean, "date": lambda text: date_text(text, self.timezone)}
        self._parsers = [(source, field, typed[kind]) for source, (field, kind) in self.options.mapping.items()]
        """(column, field, parser or None for text) of each mapped column, in the mapping's order."""
        self._prefetched: set[str] | None = None
        """The stored event ids `take_batch` looked up for a batch it left to the rows."""
        kinds = dict(self.options.mapping.values())  # field -> type
        plain = len(kinds) == len(self.options.mapping) and kinds.get("action") in (None, "string")
        self._columns = [(s, f, kind) for s, (f, kind) in self.options.mapping.items()] if plain else None
        """(column, field, type) for `take_batch`; None: every batch goes row by row."""

    def take_batch(self, tx: "Transaction", batch: Batch, layout: Layout, delimiter: str, counts: ImportCounts) -> bool:
        """A batch of new events in the common shape is applied column by column, each column in
        a few C-level calls: exactly what `apply` makes of each row (tested equal in
        tests/handlers/test_batched_imports.py). The shape: plain records with every mapped
        cell filled, UTC times to the second, booleans, text JSON writes as it is, no event
        stored or repeated, none too old, no opt-out. Any other batch goes row by row."""
        if self._columns is None or batch.odd:
            return False
        records = [text.split(delimiter) for text in batch.texts]
        if set(map(len, records)) != {layout.width}:
            return False
        cells_of = list(zip(*records, strict=True))
        event: dict[str, list[Any]] = {}
        for source, field, kind in self._columns:
            position = layout.positions.get(source)
            if position is None:
                continue  # not in this file: no event has the field
            texts = list(map(str.strip, cells_of[position]))
            if "" in texts:
                return False
            values: list[Any] | None = texts
            if kind == "date":
                values = utc_column(texts)
            elif kind == "boolean":
                values = boolean_column(texts)
            elif field not in _OWN_COLUMNS and not _JSON_PLAIN.fullmatch("".join(texts)):
                return False
            if values is None:
                return False
            event[field] = values
        event_ids, times = event["event_id"], event["time"]
        actions = list(map(str.lower, event["action"])) if "action" in event else [None] * len(event_ids)
        if len(set(event_ids)) != len(event_ids) or min(times) < self._since or "opt-out" in actions:
            return False
        known = tx.events.stored(self.partner, event_ids)
        if known:
            self._prefetched = known  # `prepare` would look them up again
            return False
        self._writes.add_all(self.partner, event_ids, event["contact_id"], actions, times, _fields_json(event))
        counts.rows += len(event_ids)
        counts.created += len(event_ids)
        return True

    def prepare(self, tx: "Transaction", rows: list[Row]) -> None:
        """Which of the batch's event ids are stored already: one lookup for the batch."""
        if self._prefetched is not None:
            self._known, self._prefetched = self._prefetched, None
            return
        ids = [event_id for row in rows if (event_id := row.cell(self._event_id_column))]
        self._known = tx.events.stored(self.partner, ids)

    def apply(self, tx: "Transaction", row: Row) -> str:
        event = self._event(row)
        if event["time"] < self._since:
            return "too_old"
        event_id = event["event_id"]
        if event_id in self._known:
            return UNCHANGED
        self._known.add(event_id)
        action = event.get("action", "").lower() or None
        fields = {k: val for k, val in event.items() if k not in _OWN_COLUMNS}
        self._writes.add(self.partner, event_id, event["contact_id"], action, event["time"], fields)
        if action == "opt-out":
            self._opted_out += tx.contacts.opt_out(self.partner, event["contact_id"])
            self._opted_out += tx.subscribers.opt_out(self.partner, event["contact_id"].lower())
        return CREATED

    def flush(self, tx: "Transaction") -> None:
        self._writes.flush()

    def finish(self, tx: "Transaction", counts: ImportCounts) -> None:
        counts.extra.setdefault("too_old", 0)
        counts.extra["opted_out"] = self._opted_out
        if self._opted_out:
            tx.contacts.changed(self.partner)

    def _event(self, row: Row) -> dict[str, Any]:
        event: dict[str, Any] = {}
        cells = row.cells()
        for source, field, parse in self._parsers:
            cell = cells.get(source)
            if not cell:
                if field in REQUIRED:
                    row.reject("missing-value", f"{field} is empty")
                continue
            if parse is None:
                event[field] = cell
                continue
            try:
                event[field] = parse(cell)
            except ValueError as exc:
                if field in ("event_id", "time"):
                    row.reject("invalid-attribute-data", f"{field}: {exc}")
                row.partial("invalid-attribute-data", f"{field}: {exc}; the field was dropped")
        return event


def _fields_json(event: dict[str, list[Any]]) -> list[str]:
    """`json.dumps` of each event's other fields, for columns whose text needs no escaping."""
    names, columns = [], []
    for field, values in event.items():
        if field in _OWN_COLUMNS:
            continue
        if values and values[0].__class__ is bool:
            names.append(json.dumps(field).replace("%", "%%") + ": %s")
            columns.append([("false", "true")[value] for value in values])
        else:
            names.append(json.dumps(field).replace("%", "%%") + ': "%s"')
            columns.append(values)
    if not names:
        return ["{}"] * len(event["event_id"])
    template = "{" + ", ".join(names) + "}"
    return [template % values for values in zip(*columns, strict=True)]
