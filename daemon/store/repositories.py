"""The store's repositories: every statement dropd runs against its database, by topic.

A repository is built on one connection inside one transaction (`Transaction` below), so
whatever a run does through `tx.contacts`, `tx.runs` and `tx.ledger` commits or rolls back
together. The SQL is written once for every backend: `?` placeholders (a backend that uses
another style translates them), `ON CONFLICT ... DO NOTHING` / `DO UPDATE`, `RETURNING`,
`IS DISTINCT FROM`; booleans are stored as 0/1 and JSON as text.
"""

import datetime
import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any

from daemon.clock import utc_now, utc_stamp
from daemon.store.backend import Connection
from daemon.store.records import RUN_COLUMNS, OutgoingMail, RunRecord, StoredContact, StoredSubscriber, WebSession
from daemon.store.row_digests import DigestSet

INTERRUPTED = "interrupted: the daemon stopped during the run; nothing was applied"
CUT_AT_STOP = "cut-at-stop: the daemon was stopped during the run and grace_time ran out; nothing was applied"
STORE_UNREACHABLE = (
    "store-unreachable: the store could not be reached during the run; nothing was applied, and the feed ran "
    "again once it was back"
)


class _Repository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._db.execute(sql, params).fetchall()

    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows one at a time, never all held at once."""
        return self._db.stream(sql, params)


IN_LIST = 500
"""Values per `IN (...)` list: one statement looks up this many keys."""


def _chunks(values: list[Any], size: int = IN_LIST) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _among(db: Connection, column: str, values: Iterable[Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(condition, its parameters) pairs that together match `column` against every one of
    `values`: one `column = ANY(?)` with them all as an array where the backend takes arrays
    (PostgreSQL: one statement text, parsed and planned as one), else `IN (...)` lists of
    IN_LIST values each (SQLite)."""
    values = list(values)
    if db.arrays:
        if values:
            yield f"{column} = ANY(?)", (values,)
        return
    for chunk in _chunks(values):
        yield f"{column} IN ({', '.join('?' * len(chunk))})", tuple(chunk)


def _keyed_lookups(
    db: Connection, select: str, params: tuple[Any, ...], column: str, values: Iterable[Any]
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Statements (with their parameters) that together find the rows of `select ... AND`
    (a query ending in "AND ", taking `params`) whose text `column` is one of `values`.
    PostgreSQL: one statement that probes the index once per value (a LATERAL subquery per
    value of the array, fenced with OFFSET 0 so the planner cannot turn it into a scan of every
    row of the partner: a hash of the array against a seq scan costs a first import time
    growing with the square of its size). SQLite: IN lists."""
    values = list(dict.fromkeys(values))
    if db.arrays:
        if values:
            yield (
                f"SELECT found.* FROM unnest(?::text[]) AS wanted(value) CROSS JOIN LATERAL "
                f"({select}{column} = wanted.value OFFSET 0) AS found",
                (values, *params),
            )
        return
    for chunk in _chunks(values):
        yield f"{select}{column} IN ({', '.join('?' * len(chunk))})", (*params, *chunk)


PARAMETERS_PER_STATEMENT = 30_000
"""Under SQLite's limit (32,766) and PostgreSQL's (65,535) on parameters in one statement."""


def insert_returning_keys(
    db: Connection, table: str, columns: tuple[str, ...], natural_key: str, rows: list[Any]
) -> dict[Any, int]:
    """Insert `rows` by multi-row INSERTs; the store key of each, by its `natural_key` value."""
    keys: dict[Any, int] = {}
    marks = f"({', '.join('?' * len(columns))})"
    for chunk in _chunks(rows, PARAMETERS_PER_STATEMENT // len(columns)):
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([marks] * len(chunk))} "
            f"RETURNING id, {natural_key}"
        )
        keys.update((natural, key) for key, natural in db.execute(sql, [value for row in chunk for value in row]))
    return keys


class _Insert(tuple[Any, ...]):
    """A queued INSERT: (table, columns, natural key column). Rows queued with the same one in a
    row are written by one multi-row statement that returns each new row's store key."""


class _Append(tuple[Any, ...]):
    """A queued INSERT of one row: (table, columns, conflict clause[, (column, value) pairs all
    its rows share]). Rows queued with the same one in a row are written by the connection's
    `insert_rows`, its fastest way for many."""


class _QueuedWrites:
    """Statements kept in order and run at `flush`, each run of the same statement as one
    `executemany` (an insert: as multi-row INSERTs): a batch of rows costs a few round trips,
    and the order of the writes (which unique indexes may depend on) is the order they were
    queued in. `flush` returns the store keys of the rows it inserted, by natural key."""

    def __init__(self, connection: Connection) -> None:
        self._db = connection
        self._queue: list[tuple[Any, ...]] = []
        self._now: str | None = None
        self._inserted: dict[str, int] = {}
        self._inserts: dict[tuple[str, ...], _Insert] = {}

    def _queue_write(self, sql: str | _Append, params: tuple[Any, ...]) -> None:
        self._queue.append((sql, params))

    def _queue_insert(self, table: str, values: dict[str, Any], natural_key: str) -> None:
        columns = tuple(values)
        statement = self._inserts.get(columns)
        if statement is None:
            statement = self._inserts[columns] = _Insert((table, columns, natural_key))
        self._queue.append((statement, tuple(values.values())))

    def _stamp(self) -> str:
        """The time the queued writes are stamped with: one per flush."""
        if self._now is None:
            self._now = utc_stamp()
        return self._now

    def flush(self) -> dict[str, int]:
        queue, self._queue = self._queue, []
        self._now = None
        start = 0
        while start < len(queue):
            statement = queue[start][0]
            end = start + 1
            while end < len(queue) and (queue[end][0] is statement or queue[end][0] == statement):
                end += 1
            self._run(statement, [params for _, params in queue[start:end]])
            start = end
        inserted, self._inserted = self._inserted, {}
        return inserted

    def _run(self, statement: Any, rows: list[Any]) -> None:
        if isinstance(statement, _Insert):
            table, columns, natural_key = statement
            self._inserted.update(insert_returning_keys(self._db, table, columns, natural_key, rows))
        elif isinstance(statement, _Append):
            table, columns, conflict, *fixed = statement
            self._db.insert_rows(table, columns, conflict, rows, *fixed)
        elif len(rows) == 1:
            self._db.execute(statement, rows[0])
        else:
            self._db.executemany(statement, rows)


class ContactWrites(_QueuedWrites):
    """Contacts created and updated by an import, written in order at `flush`."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._updates: dict[tuple[str, ...], str] = {}

    def create(self, partner: str, fields: dict[str, Any], custom: dict[str, Any]) -> None:
        """A new contact; `fields` are columns (contact_id, names, phone, opted_out, ...)."""
        now = self._stamp()
        values = {**fields, "opted_out": int(fields.get("opted_out", 0)), "partner": partner,
                  "custom": _custom_json(custom), "created_at": now, "updated_at": now}  # fmt: skip
        self._queue_insert("contacts", values, "contact_id")

    _NEW = ("contact_id", "source_hash", "first_name", "last_name", "mobile_number", "crm_id", "email", "staff_id",
            "preferred_name", "language", "messaging_status_sms", "messaging_status_web_bot", "opted_out", "custom")  # fmt: skip

    @property
    def checked_later(self) -> bool:
        """True when `create_all` may finish in the background, and the store itself checks the
        contacts' unique keys: a taken one raises `KeyTaken` at `settle`, and none of the batch
        is written. Otherwise the caller must know the keys are free."""
        return self._db.checks_keys_later

    def settle(self) -> None:
        """Wait for what `create_all` left running (see `checked_later`)."""
        self._db.settle()

    def create_all(self, partner: str, columns: dict[str, list[Any]], custom: list[tuple[Any, ...]]) -> list[int]:
        """New contacts (nothing may be queued): `columns` holds each field of `create` (None, or
        no column: not given) for every contact, `custom` its custom fields as (field, value) pairs.
        Returns their store keys, in order."""
        assert not self._queue, "create_all after queued writes would reorder them"
        encoded = {items: _encoded_custom(items) for items in set(custom)}
        size = len(columns["contact_id"])
        # A field no contact of the batch has is left to the column's default (NULL): the rows
        # staged and moved are only as wide as what the file gave (contact_id always first).
        given = [
            (name, column) for name in self._NEW[:-2] if (column := columns.get(name)) and column.count(None) < size
        ]
        names = (*(name for name, _ in given), *self._NEW[-2:])
        values = [column for _, column in given]
        rows = list(zip(*values, map(int, columns["opted_out"]), map(encoded.__getitem__, custom), strict=True))
        now = utc_stamp()
        fixed = {"partner": partner, "created_at": now, "updated_at": now}
        return self._db.insert_keyed("contacts", names, rows, fixed)

    def update(self, key: int, fields: dict[str, Any], custom: dict[str, Any] | None = None) -> None:
        """Change the given columns of one contact (and its custom fields, when given)."""
        values = dict(fields)
        if "opted_out" in values:
            values["opted_out"] = int(values["opted_out"])
        if custom is not None:
            values["custom"] = _custom_json(custom)
        values["updated_at"] = self._stamp()
        names = tuple(values)
        sql = self._updates.get(names)
        if sql is None:
            sql = self._updates[names] = f"UPDATE contacts SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?"
        self._queue_write(sql, (*values.values(), key))


def _custom_json(custom: dict[str, Any]) -> str:
    """A contact's custom fields as stored: the same few values recur on most rows, so each
    distinct set is encoded once."""
    return _encoded_custom(tuple(custom.items()))


@functools.lru_cache(maxsize=4096)
def _encoded_custom(items: tuple[Any, ...]) -> str:
    return json.dumps(dict(items))


class Contacts(_Repository):
    _MATCH = (
        "SELECT id, contact_id, crm_id, mobile_number, source_hash, custom, preferred_name, previous_mobile_number, "
        "messaging_status_sms, messaging_status_web_bot FROM contacts "
        "WHERE partner = ? AND "
    )
    MATCH_FIELDS = ("contact_id", "crm_id", "mobile_number")

    def find(self, partner: str, field: str, values: Iterable[Any]) -> list[StoredContact]:
        """The partner's contacts whose `field` (one of MATCH_FIELDS) is one of `values`."""
        if field not in self.MATCH_FIELDS:
            raise ValueError(f"contacts are not looked up by {field}")
        found: list[StoredContact] = []
        for sql, params in _keyed_lookups(self._db, self._MATCH, (partner,), field, values):
            found += [contact for contact in map(_contact, self._all(sql, params)) if contact is not None]
        return found

    def writes(self) -> ContactWrites:
        """Where an import queues its creates and updates (written at its `flush`)."""
        return ContactWrites(self._db)

    def opt_out(self, partner: str, contact_id: str) -> bool:
        """Opt one contact out (an opt-out event); True when it was opted in until now.

        Its source hash is cleared: the next import of the same row must not count as unchanged.
        """
        self.serialize_changes(partner)
        cursor = self._db.execute(
            "UPDATE contacts SET opted_out = 1, updated_at = ?, source_hash = NULL "
            "WHERE partner = ? AND contact_id = ? AND opted_out = 0",
            (utc_stamp(), partner, contact_id),
        )
        return cursor.rowcount > 0

    def version(self, partner: str) -> int:
        """A number that grows with every run that changes the partner's contacts."""
        row = self._one("SELECT version FROM partner_versions WHERE partner = ?", (partner,))
        return row[0] if row else 0

    def changed(self, partner: str) -> int:
        """Record that this transaction changed the partner's contacts; returns the new version."""
        version = self.version(partner) + 1
        self._db.execute(
            "INSERT INTO partner_versions (partner, version) VALUES (?, ?) "
            "ON CONFLICT (partner) DO UPDATE SET version = excluded.version",
            (partner, version),
        )
        return version

    def serialize_changes(self, partner: str) -> None:
        """Taken by contacts imports and, in its own transaction, by a contacts export before
        its snapshot: the export never sees a change whose earlier neighbour commits later.
        SQLite has one writer at a time, so only PostgreSQL needs the lock."""
        self._db.lock_for_transaction(f"contacts:{partner}")

    def last_change(self, partner: str) -> str | None:
        """When the partner's contacts last changed (a UTC stamp), None when it has none."""
        row = self._one("SELECT MAX(updated_at) FROM contacts WHERE partner = ?", (partner,))
        return row[0] if row else None

    def custom_field_names(self, partner: str) -> list[str]:
        """The custom fields the partner's feeds declared, by name."""
        rows = self._all("SELECT field FROM custom_fields WHERE partner = ? ORDER BY field", (partner,))
        return [row[0] for row in rows]

    def for_export(self, partner: str, after: str | None, upto: str) -> Iterator[Any]:
        """The partner's contacts changed after `after` (all when None) up to `upto` (UTC
        stamps), in key order, streamed."""
        since = "" if after is None else after
        return self._stream(
            "SELECT id, crm_id, first_name, last_name, preferred_name, mobile_number, email, language, "
            "messaging_status_sms, messaging_status_web_bot, opted_out, custom, created_at, updated_at "
            "FROM contacts WHERE partner = ? AND updated_at > ? AND updated_at <= ? ORDER BY id",
            (partner, since, upto),
        )

    def declare_custom_fields(self, partner: str, fields: list[tuple[str, bool, bool]]) -> None:
        """(field, mergeable, visible) of each custom field a feed maps."""
        self._db.executemany(
            "INSERT INTO custom_fields (partner, field, mergeable, visible) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (partner, field) DO UPDATE SET mergeable = excluded.mergeable, visible = excluded.visible",
            [(partner, field, int(mergeable), int(visible)) for field, mergeable, visible in fields],
        )

    def listing(self, partner: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT contact_id, crm_id, first_name, last_name, preferred_name, mobile_number, email, staff_id, language, "
            "messaging_status_sms, messaging_status_web_bot, opted_out, custom, created_at, updated_at FROM contacts "
            "WHERE partner = ? ORDER BY contact_id",
            (partner,),
        )
        return [dict(row, opted_out=bool(row["opted_out"]), custom=json.loads(row["custom"])) for row in rows]


class RowDigests(_Repository):
    """What each import feed's last import left in the store (see `row_digests.py`)."""

    def previous(self, feed: str, partner: str, version: int) -> DigestSet | None:
        """The feed's last set, if what it describes (the partner's contacts or list) is still
        at `version`."""
        row = self._one("SELECT version FROM feed_row_digests WHERE feed = ? AND partner = ?", (feed, partner))
        if row is None or row[0] != version:
            return None
        blobs = self._db.get_blobs("feed_row_digests", "feed", feed, ("digests", "record_keys"))
        if blobs is None:
            return None
        return DigestSet.from_bytes(blobs["digests"], blobs["record_keys"])

    def save(self, feed: str, partner: str, version: int, table: DigestSet) -> None:
        self._db.execute(
            "INSERT INTO feed_row_digests (feed, partner, version, digests, record_keys) VALUES (?, ?, ?, '', '') "
            "ON CONFLICT (feed) DO UPDATE SET partner = excluded.partner, version = excluded.version",
            (feed, partner, version),
        )
        digests, keys = table.to_bytes()
        self._db.put_blobs("feed_row_digests", "feed", feed, {"digests": digests, "record_keys": keys})


class SubscriberWrites(_QueuedWrites):
    """Subscribers created, updated and removed by an import, written in order at `flush`.
    Updates name a subscriber by its email key, so one created earlier in the same batch (not
    written yet, so without a store key) can be updated too."""

    def create(self, partner: str, email_key: str, email: str, fields: dict[str, Any]) -> None:
        now = self._stamp()
        values = {"partner": partner, "email_key": email_key, "email": email, "first_name": fields.get("first_name"),
                  "last_name": fields.get("last_name"), "segment_code": fields.get("segment_code"),
                  "created_at": now, "updated_at": now}  # fmt: skip
        self._queue_insert("subscribers", values, "email_key")

    def update(self, partner: str, email_key: str, fields: dict[str, Any], restore: bool = False) -> None:
        values = {**fields, "updated_at": self._stamp()}
        if restore:
            values["removed_at"] = None
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._queue_write(
            f"UPDATE subscribers SET {assignments} WHERE partner = ? AND email_key = ?",
            (*values.values(), partner, email_key),
        )

    def remove(self, keys: Any) -> None:
        """Mark these subscribers (store keys) removed, now: what is queued is written first."""
        self.flush()
        now = self._stamp()
        for condition, params in _among(self._db, "id", keys):
            self._db.execute(
                f"UPDATE subscribers SET removed_at = ?, updated_at = ? WHERE {condition}", (now, now, *params)
            )


class Subscribers(_Repository):
    """One subscriber list per partner, keyed by the lower-cased email; removed ones stay."""

    def find(self, partner: str, email_keys: Iterable[str]) -> list[StoredSubscriber]:
        """The partner's subscribers (removed ones too) whose lower-cased email is in `email_keys`."""
        found = []
        select = "SELECT id, email_key, first_name, last_name, segment_code, removed_at FROM subscribers WHERE partner = ? AND "
        for sql, params in _keyed_lookups(self._db, select, (partner,), "email_key", email_keys):
            rows = self._all(sql, params)
            found += [StoredSubscriber(row[0], row[1], row[2], row[3], row[4], row[5] is not None) for row in rows]
        return found

    def active_keys(self, partner: str) -> Any:
        """The store keys of the partner's subscribers that are not removed, streamed."""
        for row in self._stream("SELECT id FROM subscribers WHERE partner = ? AND removed_at IS NULL", (partner,)):
            yield row[0]

    def version(self, partner: str) -> int:
        """A number that grows with every run that changes the partner's list."""
        row = self._one("SELECT list_version FROM partner_versions WHERE partner = ?", (partner,))
        return row[0] if row else 0

    def changed(self, partner: str) -> int:
        """Record that this transaction changed the partner's list; returns the new version."""
        version = self.version(partner) + 1
        self._db.execute(
            "INSERT INTO partner_versions (partner, version, list_version) VALUES (?, 0, ?) "
            "ON CONFLICT (partner) DO UPDATE SET list_version = excluded.list_version",
            (partner, version),
        )
        return version

    def writes(self) -> "SubscriberWrites":
        """Where an import queues its writes (written at its `flush`)."""
        return SubscriberWrites(self._db)

    def opt_out(self, partner: str, email_key: str) -> bool:
        cursor = self._db.execute(
            "UPDATE subscribers SET opted_out = 1, updated_at = ? WHERE partner = ? AND email_key = ? AND opted_out = 0",
            (utc_stamp(), partner, email_key),
        )
        return cursor.rowcount > 0

    def engagement(self, partner: str) -> Iterator[Any]:
        """Each active subscriber with their open and click counts, last open and click, and
        first opt-out event, from the partner's events whose contact ID is their email."""
        cursor = self._stream(
            "WITH activity AS (SELECT lower(contact_id) AS email_key, "
            "SUM(CASE WHEN action = 'open' THEN 1 ELSE 0 END) AS opens, "
            "SUM(CASE WHEN action = 'click' THEN 1 ELSE 0 END) AS clicks, "
            "MAX(CASE WHEN action = 'open' THEN time END) AS last_open, "
            "MAX(CASE WHEN action = 'click' THEN time END) AS last_click, "
            "MIN(CASE WHEN action = 'opt-out' THEN time END) AS opt_out_time "
            "FROM events WHERE partner = ? GROUP BY lower(contact_id)) "
            "SELECT s.email, s.opted_out, s.segment_code, s.updated_at, a.opens, a.clicks, a.last_open, a.last_click, "
            "a.opt_out_time FROM subscribers s LEFT JOIN activity a ON a.email_key = s.email_key "
            "WHERE s.partner = ? AND s.removed_at IS NULL ORDER BY s.email_key",
            (partner, partner),
        )
        yield from cursor

    def listing(self, partner: str, include_removed: bool = False) -> list[dict[str, Any]]:
        query = (
            "SELECT email, first_name, last_name, segment_code, opted_out, created_at, updated_at, removed_at "
            "FROM subscribers WHERE partner = ?"
        )
        if not include_removed:
            query += " AND removed_at IS NULL"
        return [
            dict(row, opted_out=bool(row["opted_out"])) for row in self._all(query + " ORDER BY email_key", (partner,))
        ]


class EventWrites(_QueuedWrites):
    """Engagement events added by an import, written at `flush`; one already stored (the same
    partner and event id) is left as it is."""

    _ADD = _Append(
        (
            "events",
            ("partner", "event_id", "contact_id", "action", "time", "fields", "imported_at"),
            "ON CONFLICT (partner, event_id) DO NOTHING",
        )
    )

    def add(
        self, partner: str, event_id: str, contact_id: str, action: str | None, time: str, fields: dict[str, Any]
    ) -> None:
        self._queue_write(self._ADD, (partner, event_id, contact_id, action, time, json.dumps(fields), self._stamp()))

    def add_all(
        self, partner: str, event_ids: list[str], contact_ids: list[str], actions: list[Any], times: list[str],
        fields: list[str],
    ) -> None:  # fmt: skip
        """`add` for a batch of events given column by column (`fields` as JSON text)."""
        table, columns, conflict = self._ADD
        same = _Append((table, columns[1:-1], conflict, (("partner", partner), ("imported_at", self._stamp()))))
        self._queue += zip(repeat(same), zip(event_ids, contact_ids, actions, times, fields, strict=True))


class Events(_Repository):
    def stored(self, partner: str, event_ids: Iterable[str]) -> set[str]:
        """Which of `event_ids` the partner's events already hold."""
        found: set[str] = set()
        select = "SELECT event_id FROM events WHERE partner = ? AND "
        for sql, params in _keyed_lookups(self._db, select, (partner,), "event_id", event_ids):
            rows = self._all(sql, params)
            found.update(row[0] for row in rows)
        return found

    def writes(self) -> EventWrites:
        """Where an import queues its events (written at its `flush`)."""
        return EventWrites(self._db)

    def listing(self, partner: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT event_id, contact_id, action, time, fields FROM events WHERE partner = ? ORDER BY time, event_id",
            (partner,),
        )
        return [dict(row, fields=json.loads(row["fields"])) for row in rows]


MESSAGE_COLUMNS = (
    "message_key", "contact_id", "channel", "timestamp", "direction", "body", "outgoing_source",
    "campaign_id", "campaign_name", "script_id", "script_name", "media",
)  # fmt: skip


class Messages(_Repository):
    def add(self, partner: str, message: dict[str, Any]) -> bool:
        """Store one message of the organisation's log, tied to its contact's own key when the
        contact is known; False when its key is already there."""
        values = [message.get(name) for name in MESSAGE_COLUMNS]
        cursor = self._db.execute(
            f"INSERT INTO messages (partner, {', '.join(MESSAGE_COLUMNS)}, imported_at, contact_key) "
            f"VALUES (?, {', '.join('?' * len(MESSAGE_COLUMNS))}, ?, "
            "(SELECT id FROM contacts WHERE partner = ? AND contact_id = ?)) ON CONFLICT (partner, message_key) DO NOTHING",
            (partner, *values, utc_stamp(), partner, message.get("contact_id")),
        )
        return cursor.rowcount > 0

    def tie_contacts(self, partner: str) -> None:
        """Messages stored before their contact was known get its key, now that it may be."""
        self._db.execute(
            "UPDATE messages SET contact_key = (SELECT c.id FROM contacts c "
            "WHERE c.partner = messages.partner AND c.contact_id = messages.contact_id) "
            "WHERE partner = ? AND contact_key IS NULL",
            (partner,),
        )

    def serialize_positions(self, partner: str) -> None:
        """Called by message imports and, in its own transaction, by an export before its
        snapshot: an export then never sees a position whose lower neighbour commits later.
        SQLite has one writer at a time, so only PostgreSQL needs the lock."""
        self._db.lock_for_transaction(f"messages:{partner}")

    def last_position(self, partner: str) -> int:
        """The store position (insertion order) of the partner's newest message; 0 for none."""
        return int(self._one("SELECT COALESCE(MAX(id), 0) FROM messages WHERE partner = ?", (partner,))[0])

    @staticmethod
    def _filtered(channels: list[str], directions: list[str], outgoing_sources: list[str]) -> str:
        def marks(values: list[str]) -> str:
            return ", ".join("?" * len(values))

        return (
            f"m.channel IN ({marks(channels)}) AND m.direction IN ({marks(directions)}) "
            f"AND (m.direction = 'incoming' OR m.outgoing_source IN ({marks(outgoing_sources)}))"
        )

    def for_export(
        self, feed: str, partner: str, after: int, upto: int, channels: Iterable[str], directions: Iterable[str],
        outgoing_sources: Iterable[str],
    ) -> Iterator[Any]:  # fmt: skip
        """Messages with positions in (after, upto], and those `feed` held back before, whose
        contact is known, filtered, oldest first, with their contact's CRM ID, key and names
        (joined on the contact's own key, which a changed contact ID leaves alone); streamed."""
        filters = [list(channels), list(directions), list(outgoing_sources)]
        cursor = self._stream(
            "SELECT m.id, c.crm_id, c.id AS contact_key, c.first_name, c.last_name, m.channel, m.campaign_id, "
            "m.campaign_name, m.timestamp, m.direction, m.body, m.outgoing_source, m.media, m.script_id, m.script_name "
            "FROM messages m JOIN contacts c ON c.id = m.contact_key "
            "WHERE m.partner = ? AND m.id <= ? "
            "AND (m.id > ? OR m.id IN (SELECT message_id FROM held_messages WHERE feed = ?)) "
            f"AND {self._filtered(*filters)} ORDER BY m.id",
            (partner, upto, after, feed, *filters[0], *filters[1], *filters[2]),
        )
        yield from cursor

    def for_notes(self, feed: str, partner: str, after: int, upto: int) -> Iterator[Any]:
        """Messages in (after, upto], and those `feed` held back, whose contact is known, by
        contact and then time: (contact key, CRM ID, timestamp, direction, body); streamed."""
        return self._stream(
            "SELECT c.id, c.crm_id, m.timestamp, m.direction, m.body FROM messages m JOIN contacts c ON c.id = m.contact_key "
            "WHERE m.partner = ? AND m.id <= ? "
            "AND (m.id > ? OR m.id IN (SELECT message_id FROM held_messages WHERE feed = ?)) "
            "ORDER BY c.id, m.timestamp, m.id",
            (partner, upto, after, feed),
        )

    def hold_back(
        self, feed: str, partner: str, after: int, upto: int, channels: Iterable[str], directions: Iterable[str],
        outgoing_sources: Iterable[str],
    ) -> None:  # fmt: skip
        """After `feed` delivered (after, upto]: what it held back and has now sent is released,
        and the window's messages without a known contact are held back for its next runs."""
        filters = [list(channels), list(directions), list(outgoing_sources)]
        self._db.execute(
            "DELETE FROM held_messages WHERE feed = ? AND message_id IN "
            "(SELECT id FROM messages WHERE partner = ? AND id <= ? AND contact_key IS NOT NULL)",
            (feed, partner, upto),
        )
        self._db.execute(
            "INSERT INTO held_messages (feed, message_id) SELECT ?, m.id FROM messages m "
            f"WHERE m.partner = ? AND m.id > ? AND m.id <= ? AND m.contact_key IS NULL AND {self._filtered(*filters)} "
            "ON CONFLICT (feed, message_id) DO NOTHING",
            (feed, partner, after, upto, *filters[0], *filters[1], *filters[2]),
        )

    def held_back(self, feed: str) -> int:
        """Messages `feed` holds back now, waiting for their contact."""
        return int(self._one("SELECT COUNT(*) FROM held_messages WHERE feed = ?", (feed,))[0])

    def listing(self, partner: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT contact_id, channel, timestamp, direction, body, outgoing_source, campaign_id, campaign_name, "
            "script_id, script_name, media FROM messages WHERE partner = ? ORDER BY timestamp, id",
            (partner,),
        )
        return [dict(row) for row in rows]


class Runs(_Repository):
    def start(
        self, partner: str, feed: str, kind: str, trigger: str, file: str | None, sha256: str | None,
        size: int | None = None, instance: str | None = None, lease_until: str | None = None,
    ) -> int:  # fmt: skip
        return int(
            self._one(
                "INSERT INTO runs (partner, feed, kind, trigger, file, sha256, size, started, status, instance, "
                "lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?) RETURNING id",
                (partner, feed, kind, trigger, file, sha256, size, utc_stamp(), instance, lease_until),
            )[0]
        )

    def renew_leases(self, instance: str, until: str) -> int:
        """The heartbeat: this instance still works on its running runs until `until`."""
        cursor = self._db.execute(
            "UPDATE runs SET lease_until = ? WHERE status = 'running' AND instance = ?", (until, instance)
        )
        return cursor.rowcount

    def finish(
        self, run_id: int, status: str, reason: str | None = None, rows_in_file: int | None = None,
        rows_applied: int | None = None, rows_rejected: int | None = None, details: dict[str, Any] | None = None,
        error_file: str | None = None,
    ) -> None:  # fmt: skip
        self._db.execute(
            "UPDATE runs SET status = ?, reason = ?, rows_in_file = ?, rows_applied = ?, rows_rejected = ?, "
            "details = ?, error_file = ?, finished = ? WHERE id = ?",
            (status, reason, rows_in_file, rows_applied, rows_rejected, json.dumps(details or {}), error_file,
             utc_stamp(), run_id),
        )  # fmt: skip

    def name_file(self, run_id: int, file: str, sha256: str | None, size: int | None) -> None:
        """The file a run made (an export), once it exists."""
        self._db.execute("UPDATE runs SET file = ?, sha256 = ?, size = ? WHERE id = ?", (file, sha256, size, run_id))

    def add_errors(self, run_id: int, errors: list[tuple[Any, ...]]) -> None:
        """(row number, code, failure type, message) of rejected or partly applied rows."""
        self._db.executemany(
            "INSERT INTO run_errors (run_id, row_number, code, failure_type, message) VALUES (?, ?, ?, ?, ?)",
            [(run_id, *error) for error in errors],
        )

    def error_counts(self, run_id: int, first: int = 3) -> list[tuple[str, int, list[int]]]:
        """(code, rows with it, its first `first` row numbers) of each error code of the run,
        the most frequent first. The code of a partial row's dropped field is its own code
        (`invalid-attribute-data: FIELD` counts apart from another field's)."""
        rows = self._all(
            "SELECT code, total, row_number FROM ("
            " SELECT code, row_number, COUNT(*) OVER (PARTITION BY code) AS total,"
            " ROW_NUMBER() OVER (PARTITION BY code ORDER BY row_number) AS position"
            " FROM run_errors WHERE run_id = ?) AS numbered WHERE position <= ? ORDER BY total DESC, code, row_number",
            (run_id, first),
        )
        counts: dict[str, tuple[int, list[int]]] = {}
        for code, total, row_number in rows:
            counts.setdefault(code, (int(total), []))[1].append(int(row_number))
        return [(code, total, numbers) for code, (total, numbers) in counts.items()]

    def fail_unreached(self, run_ids: list[int]) -> None:
        """Runs that were left `running` when the store went away under them (their feeds ran
        again since): failed, saying so. No recap: nothing was applied, and the run after
        them reports on the file."""
        for run_id in run_ids:
            self._db.execute(
                "UPDATE runs SET status = 'failed', reason = ?, finished = ? WHERE id = ? AND status = 'running'",
                (STORE_UNREACHABLE, utc_stamp(), run_id),
            )

    def fail_interrupted(self, instance: str | None = None, cut_at_stop: bool = False) -> list[tuple[int, str]]:
        """Runs whose instance is gone are failed now: (run id, feed) of each. Gone means this
        instance's own runs (at its start) and any run whose lease has expired (its instance
        died or hangs); without `instance` (one daemon alone), every run left running.
        `cut_at_stop`: this instance's runs were cut by a stop it chose (not a crash)."""
        now = utc_stamp()
        if instance is None:
            rows = self._all(
                "UPDATE runs SET status = 'failed', reason = ?, finished = ? WHERE status = 'running' RETURNING id, feed",
                (CUT_AT_STOP if cut_at_stop else INTERRUPTED, now),
            )
        else:
            rows = self._all(
                "UPDATE runs SET status = 'failed', reason = CASE WHEN instance = ? AND ? THEN ? ELSE ? END, "
                "finished = ? WHERE status = 'running' AND (instance = ? OR instance IS NULL OR lease_until < ?) "
                "RETURNING id, feed",
                (instance, cut_at_stop, CUT_AT_STOP, INTERRUPTED, now, instance, now),
            )
        return sorted(tuple(row) for row in rows)

    def interruptions(self, feed: str, sha256: str) -> int:
        """How many of the feed's last runs of this content in a row ended with the daemon dying
        under them (`interrupted`); runs cut by a chosen stop neither count nor end the row."""
        rows = self._all(
            "SELECT reason FROM runs WHERE feed = ? AND sha256 = ? AND status <> 'running' ORDER BY id DESC LIMIT 20",
            (feed, sha256),
        )
        count = 0
        for (reason,) in rows:
            if (reason or "").startswith("cut-at-stop:"):
                continue
            if not (reason or "").startswith("interrupted:"):
                break
            count += 1
        return count

    def take_over_expired(self) -> list[tuple[int, str, str]]:
        """Runs whose lease expired (their instance died or hangs) are failed now, so another
        instance can run the feed again: (run id, feed, instance) of each."""
        now = utc_stamp()
        rows = self._all(
            "UPDATE runs SET status = 'failed', reason = ?, finished = ? "
            "WHERE status = 'running' AND lease_until < ? RETURNING id, feed, instance",
            (INTERRUPTED.replace("the daemon stopped", "its instance stopped answering"), now, now),
        )
        return sorted(tuple(row) for row in rows)

    def artefacts_before(self, stamp: str, limit: int = 500) -> list[tuple[int, str]]:
        """(run id, error file) of finished runs started before `stamp` that still have one."""
        rows = self._all(
            "SELECT id, error_file FROM runs WHERE started < ? AND status <> 'running' AND error_file IS NOT NULL "
            "ORDER BY id LIMIT ?",
            (stamp, limit),
        )
        return [tuple(row) for row in rows]

    def forget_artefacts(self, run_ids: list[int]) -> None:
        """The runs keep their record; their error file and error rows are gone."""
        for chunk in _chunks(run_ids):
            marks = ", ".join("?" * len(chunk))
            self._db.execute(f"UPDATE runs SET error_file = NULL WHERE id IN ({marks})", chunk)
            self._db.execute(f"DELETE FROM run_errors WHERE run_id IN ({marks})", chunk)

    def get(self, run_id: int) -> RunRecord:
        return _run_record(self._one("SELECT * FROM runs WHERE id = ?", (run_id,)))

    def find(self, run_id: int) -> RunRecord | None:
        row = self._one("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run_record(row) if row else None

    def recent(
        self, feed: str | None = None, status: str | None = None, limit: int = 50, since: str | None = None,
        until: str | None = None, kind: str | None = None, partner: str | None = None,
        partners: Sequence[str] | None = None, before: int | None = None,
    ) -> list[RunRecord]:  # fmt: skip
        """The newest runs first; `since` (inclusive) and `until` (exclusive) bound their start,
        as UTC stamps; `kind` is the feed kind; `partners` (when not None) the only partners
        whose runs may show. `before` is a run id: the page after the one that ended with it
        (keyset pagination: each page costs the same however deep)."""
        query, params = "SELECT * FROM runs WHERE 1 = 1", list[Any]()
        for column, operator, value in (
            ("feed", "=", feed), ("status", "=", status), ("kind", "=", kind), ("started", ">=", since),
            ("started", "<", until), ("partner", "=", partner), ("id", "<", before),
        ):  # fmt: skip
            if value:
                query += f" AND {column} {operator} ?"
                params.append(value)
        if partners is not None:
            if not partners:
                return []
            query += f" AND partner IN ({', '.join('?' * len(partners))})"
            params.extend(partners)
        params.append(limit)
        return [_run_record(row) for row in self._all(query + " ORDER BY id DESC LIMIT ?", params)]

    def first_errors(self, run_id: int, limit: int = 100) -> list[tuple[int, str, str, str]]:
        """(row number, code, failure type, message) of the run's first `limit` error rows."""
        rows = self._all(
            "SELECT row_number, code, failure_type, message FROM run_errors WHERE run_id = ? "
            "ORDER BY row_number LIMIT ?",
            (run_id, limit),
        )
        return [(int(row[0]), row[1], row[2], row[3]) for row in rows]

    def imported_file(self, feed: str, stem: str, among: int = 200) -> RunRecord | None:
        """The newest of `feed`'s last `among` successful runs that imported a file named
        `stem` plus an extension."""
        found = self.recent(feed=feed, status="success", limit=among)
        return next((run for run in found if run.file and run.file.rsplit(".", 1)[0] == stem), None)

    def note(self, run_id: int, details: dict[str, Any]) -> None:
        """Add `details` to a finished run's (a late companion file's count, say)."""
        row = self._one("SELECT details FROM runs WHERE id = ?", (run_id,))
        merged = {**json.loads(row[0] or "{}"), **details} if row else details
        self._db.execute("UPDATE runs SET details = ? WHERE id = ?", (json.dumps(merged), run_id))

    def since(self, stamp: str) -> list[RunRecord]:
        """Every run started at or after `stamp`, oldest first."""
        return [_run_record(row) for row in self._all("SELECT * FROM runs WHERE started >= ? ORDER BY id", (stamp,))]

    def last_per_feed(self) -> list[RunRecord]:
        """The newest finished run of each feed."""
        rows = self._all(
            "SELECT * FROM runs WHERE id IN (SELECT MAX(id) FROM runs WHERE status <> 'running' GROUP BY feed) "
            "ORDER BY feed"
        )
        return [_run_record(row) for row in rows]


class Ledger(_Repository):
    """The files each feed has imported, by content: an identical re-drop is a duplicate."""

    def imported_by(self, feed: str, sha256: str) -> int | None:
        row = self._one("SELECT run_id FROM imported_files WHERE feed = ? AND sha256 = ?", (feed, sha256))
        return row[0] if row else None

    def claim(self, feed: str, sha256: str, file: str, run_id: int) -> int | None:
        """Take the file for this run, first thing in the run's transaction; None when taken.

        Otherwise the run that has it: with several instances, a second one importing the
        same file waits here until the first commits (then gets that run) or rolls back (then
        gets the file)."""
        cursor = self._db.execute(
            "INSERT INTO imported_files (feed, sha256, file, run_id, imported_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (feed, sha256) DO NOTHING",
            (feed, sha256, file, run_id, utc_stamp()),
        )
        return None if cursor.rowcount == 1 else self.imported_by(feed, sha256)

    def record(self, feed: str, sha256: str, file: str, run_id: int) -> None:
        """Take the file for this run even if a run imported it before (an import forced by hand)."""
        self._db.execute(
            "INSERT INTO imported_files (feed, sha256, file, run_id, imported_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (feed, sha256) DO UPDATE SET file = excluded.file, run_id = excluded.run_id, "
            "imported_at = excluded.imported_at",
            (feed, sha256, file, run_id, utc_stamp()),
        )


class Watermarks(_Repository):
    """How far each watermarked export has been delivered."""

    def position(self, feed: str) -> int:
        row = self._one("SELECT position FROM export_watermarks WHERE feed = ?", (feed,))
        return row[0] if row else 0

    def advance(self, feed: str, position: int, run_id: int) -> None:
        self._db.execute(
            "INSERT INTO export_watermarks (feed, position, run_id, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (feed) DO UPDATE SET position = excluded.position, run_id = excluded.run_id, "
            "updated = excluded.updated",
            (feed, position, run_id, utc_stamp()),
        )


class Claims(_Repository):
    def claim_window(self, feed: str, window: str) -> bool:
        """True for the first caller only: a window runs once, whatever restarts or clocks do."""
        cursor = self._db.execute(
            "INSERT INTO window_claims (feed, slot, claimed_at) VALUES (?, ?, ?) ON CONFLICT (feed, slot) DO NOTHING",
            (feed, window, utc_stamp()),
        )
        return cursor.rowcount == 1

    def has_any(self, feed: str, pattern: str) -> bool:
        """Whether the feed ever claimed a time whose key is LIKE `pattern` (one schedule entry's)."""
        row = self._one(
            "SELECT 1 FROM window_claims WHERE feed = ? AND slot LIKE ? ESCAPE '\\' LIMIT 1", (feed, pattern)
        )
        return row is not None


class Outbox(_Repository):
    """Mail waiting to be sent, sent, or refused for good: one row per message and recipient."""

    def add(
        self, kind: str, message_id: str, run_id: int | None, recipients: Iterable[str], subject: str, message: bytes
    ) -> None:
        """Queue `message` for each recipient; a message already queued for one is not queued twice."""
        now = utc_stamp()
        self._db.executemany(
            "INSERT INTO outbox (kind, message_id, run_id, recipient, subject, message, status, next_attempt, created) "
            "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (message_id, recipient) DO NOTHING",
            [(kind, message_id, run_id, recipient, subject, message, now, now) for recipient in recipients],
        )

    def forget_bodies_before(self, stamp: str) -> int:
        """Sent and refused messages queued before `stamp` keep their row (who got what, and
        that it is never queued again) but lose their body and attachment."""
        cursor = self._db.execute(
            "UPDATE outbox SET message = ? WHERE status <> 'pending' AND created < ? AND length(message) > 0",
            (b"", stamp),
        )
        return cursor.rowcount

    def take_due(self, now: datetime.datetime, limit: int, hold: float) -> list[OutgoingMail]:
        """Up to `limit` messages due now, each held for this sender for `hold` seconds (its next
        attempt moved on): a sender of another instance does not take the same ones."""
        rows = self._all(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt <= ? ORDER BY id LIMIT ?",
            (utc_stamp(now), limit),
        )
        held = utc_stamp(now + datetime.timedelta(seconds=hold))
        taken = []
        for row in rows:
            cursor = self._db.execute(
                "UPDATE outbox SET next_attempt = ? WHERE id = ? AND status = 'pending' AND next_attempt = ?",
                (held, row["id"], row["next_attempt"]),
            )
            if cursor.rowcount == 1:
                taken.append(_mail(row))
        return taken

    def release(self, mail_ids: list[int]) -> None:
        """Messages taken but not tried are due again now."""
        self._db.executemany(
            "UPDATE outbox SET next_attempt = ? WHERE id = ? AND status = 'pending'",
            [(utc_stamp(), i) for i in mail_ids],
        )

    def sent(self, mail_id: int) -> None:
        self._db.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
            (utc_stamp(), mail_id),
        )

    def retry_later(self, mail_id: int, error: str, seconds: float) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ? WHERE id = ?",
            (error, utc_stamp(utc_now() + datetime.timedelta(seconds=seconds)), mail_id),
        )

    def failed(self, mail_id: int, error: str) -> None:
        self._db.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error, mail_id),
        )

    def retry_now(self, mail_id: int) -> OutgoingMail | None:
        """Send a failed or waiting message again at the next pass; None when there is no such message."""
        row = self._one(
            "UPDATE outbox SET status = 'pending', next_attempt = ? WHERE id = ? AND status <> 'sent' RETURNING *",
            (utc_stamp(), mail_id),
        )
        return _mail(row) if row else None

    def get(self, mail_id: int) -> OutgoingMail | None:
        row = self._one("SELECT * FROM outbox WHERE id = ?", (mail_id,))
        return _mail(row) if row else None

    def unsent(self) -> list[OutgoingMail]:
        """What is waiting or was refused for good, oldest first."""
        return [_mail(row) for row in self._all("SELECT * FROM outbox WHERE status <> 'sent' ORDER BY id")]

    def for_run(self, run_id: int) -> list[OutgoingMail]:
        """Every message queued about the run (its recap, one per recipient), oldest first."""
        return [_mail(row) for row in self._all("SELECT * FROM outbox WHERE run_id = ? ORDER BY id", (run_id,))]

    def pending_count(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")[0])


class Alerts(_Repository):
    """The alert conditions raised now (and mailed); cleared ones are gone."""

    def raised(self) -> dict[str, tuple[str, str]]:
        """Each raised condition's (summary, when it was raised)."""
        rows = self._all("SELECT condition, summary, raised_at FROM alerts")
        return {row["condition"]: (row["summary"], row["raised_at"]) for row in rows}

    def raise_(self, condition: str, summary: str) -> bool:
        """False when it was raised already (by another instance, a moment ago)."""
        cursor = self._db.execute(
            "INSERT INTO alerts (condition, summary, raised_at) VALUES (?, ?, ?) ON CONFLICT (condition) DO NOTHING",
            (condition, summary, utc_stamp()),
        )
        return cursor.rowcount == 1

    def clear(self, condition: str) -> bool:
        """False when it was cleared already."""
        return self._db.execute("DELETE FROM alerts WHERE condition = ?", (condition,)).rowcount == 1


class Logins(_Repository):
    """Failed logins and bans by source address, for instances that share them (epoch seconds)."""

    def failed(self, address: str, at: float, window_start: float) -> int:
        """Record a failure; the address's failures since `window_start`, this one included."""
        self._db.execute("DELETE FROM login_failures WHERE address = ? AND at <= ?", (address, window_start))
        self._db.execute("INSERT INTO login_failures (address, at) VALUES (?, ?)", (address, at))
        return int(self._one("SELECT COUNT(*) FROM login_failures WHERE address = ?", (address,))[0])

    def ban(self, address: str, until: float) -> None:
        self._db.execute("DELETE FROM login_failures WHERE address = ?", (address,))
        self._db.execute(
            "INSERT INTO bans (address, until) VALUES (?, ?) ON CONFLICT (address) DO UPDATE SET until = excluded.until",
            (address, until),
        )

    def banned_until(self, address: str, now: float) -> float | None:
        row = self._one("SELECT until FROM bans WHERE address = ? AND until > ?", (address, now))
        return row[0] if row else None

    def bans(self, now: float) -> list[tuple[str, float]]:
        return [
            tuple(row) for row in self._all("SELECT address, until FROM bans WHERE until > ? ORDER BY address", (now,))
        ]

    def unban(self, address: str) -> bool:
        self._db.execute("DELETE FROM login_failures WHERE address = ?", (address,))
        return self._db.execute("DELETE FROM bans WHERE address = ?", (address,)).rowcount > 0


class WebSessions(_Repository):
    """The web console's logged-in browsers, shared by every instance on one store. A session
    is found by the SHA-256 of its cookie (the cookie itself is never stored) and is bound to
    the staff member's password hash (`credential`): a changed password ends it."""

    def open(self, id_hash: str, staff: str, csrf: str, credential: str, expires: str) -> None:
        self._db.execute(
            "INSERT INTO web_sessions (id_hash, staff, csrf, credential, created, expires) VALUES (?, ?, ?, ?, ?, ?)",
            (id_hash, staff, csrf, credential, utc_stamp(), expires),
        )

    def find(self, id_hash: str, now: str) -> WebSession | None:
        row = self._one(
            "SELECT staff, csrf, credential, created, expires FROM web_sessions WHERE id_hash = ? AND expires > ?",
            (id_hash, now),
        )
        return WebSession(*row) if row else None

    def close(self, id_hash: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,))

    def forget_expired(self, now: str) -> int:
        return self._db.execute("DELETE FROM web_sessions WHERE expires <= ?", (now,)).rowcount


class Transaction:
    """The repositories of one transaction. Handlers and runs get this, never a connection."""

    def __init__(self, connection: Connection) -> None:
        self.contacts = Contacts(connection)
        self.row_digests = RowDigests(connection)
        self.subscribers = Subscribers(connection)
        self.events = Events(connection)
        self.messages = Messages(connection)
        self.runs = Runs(connection)
        self.ledger = Ledger(connection)
        self.claims = Claims(connection)
        self.outbox = Outbox(connection)
        self.alerts = Alerts(connection)
        self.watermarks = Watermarks(connection)
        self.logins = Logins(connection)
        self.web_sessions = WebSessions(connection)


def _contact(row: Any) -> StoredContact | None:
    if row is None:
        return None
    return StoredContact(
        row["id"], row["contact_id"], row["crm_id"], row["mobile_number"], row["source_hash"], json.loads(row["custom"]),
        row["preferred_name"], row["previous_mobile_number"], row["messaging_status_sms"],
        row["messaging_status_web_bot"],
    )  # fmt: skip


def _mail(row: Any) -> OutgoingMail:
    return OutgoingMail(**{name: row[name] for name in OutgoingMail.__dataclass_fields__})


def _run_record(row: Any) -> RunRecord:
    values = {column: row[column] for column in RUN_COLUMNS}
    values["details"] = json.loads(values["details"] or "{}")
    return RunRecord(**values)
