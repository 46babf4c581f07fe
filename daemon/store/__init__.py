"""The store: contacts, runs and their row errors, the file ledger and schedule claims.

One interface (`Store`), SQLite behind it (WAL). The schema is a list of numbered
migrations; a database whose version is newer than the code knows is refused rather than
guessed at. Connections are per thread: every run opens its own.

SQLite has one writer at a time, and an import is one transaction for its whole file. In
the daemon, writers therefore take turns on a lock of their own (`transaction`) instead of
timing out on SQLite's: a second feed's run waits for the first one's import, logged as
`run.queued`, and is listed by `waiting()`. Readers never wait: WAL lets them read the last
commit while a transaction is open, and the read-only commands open the store read-only,
without migrating it.
"""

import datetime
import json
import sqlite3
import threading
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.store.row_digests import DigestTable

log = structlog.get_logger("dropd.store")

MIGRATIONS = [
    # 1: contacts, runs, row errors, file ledger, window claims
    """
    CREATE TABLE contacts (
        id            INTEGER PRIMARY KEY,
        partner       TEXT NOT NULL,
        contact_id    TEXT NOT NULL,
        crm_id        TEXT,
        first_name    TEXT,
        last_name     TEXT,
        mobile_number TEXT,
        email         TEXT,
        staff_id      TEXT,
        opted_out     INTEGER NOT NULL DEFAULT 0,
        custom        TEXT NOT NULL DEFAULT '{}',
        source_hash   BLOB,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE UNIQUE INDEX contacts_by_contact_id ON contacts(partner, contact_id);
    CREATE UNIQUE INDEX contacts_by_crm_id ON contacts(partner, crm_id) WHERE crm_id IS NOT NULL;
    CREATE UNIQUE INDEX contacts_by_phone ON contacts(partner, mobile_number) WHERE mobile_number IS NOT NULL;
    CREATE TABLE custom_fields (
        partner   TEXT NOT NULL,
        field     TEXT NOT NULL,
        mergeable INTEGER NOT NULL,
        visible   INTEGER NOT NULL,
        PRIMARY KEY (partner, field)
    );
    CREATE TABLE runs (
        id            INTEGER PRIMARY KEY,
        partner       TEXT NOT NULL,
        feed          TEXT NOT NULL,
        kind          TEXT NOT NULL,
        trigger       TEXT NOT NULL,
        file          TEXT,
        sha256        TEXT,
        rows_in_file  INTEGER,
        rows_applied  INTEGER,
        rows_rejected INTEGER,
        started       TEXT NOT NULL,
        finished      TEXT,
        status        TEXT NOT NULL CHECK (status IN ('success', 'running', 'skipped', 'failed')),
        reason        TEXT,
        details       TEXT NOT NULL DEFAULT '{}',
        error_file    TEXT
    );
    CREATE INDEX runs_by_feed ON runs(feed, id);
    CREATE TABLE run_errors (
        run_id       INTEGER NOT NULL REFERENCES runs(id),
        row_number   INTEGER NOT NULL,
        code         TEXT NOT NULL,
        failure_type TEXT NOT NULL,
        message      TEXT NOT NULL
    );
    CREATE INDEX run_errors_by_run ON run_errors(run_id);
    CREATE TABLE imported_files (
        feed        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        file        TEXT NOT NULL,
        run_id      INTEGER NOT NULL REFERENCES runs(id),
        imported_at TEXT NOT NULL,
        PRIMARY KEY (feed, sha256)
    );
    CREATE TABLE window_claims (
        feed       TEXT NOT NULL,
        window     TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        PRIMARY KEY (feed, window)
    );
    """,
    # 2: what each feed's last import applied, and a version of each partner's contacts
    """
    CREATE TABLE partner_versions (
        partner TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    );
    CREATE TABLE feed_row_digests (
        feed    TEXT PRIMARY KEY,
        partner TEXT NOT NULL,
        version INTEGER NOT NULL,
        digests BLOB NOT NULL
    );
    """,
    # 3: subscriber lists; removed subscribers stay, with removed_at set
    """
    CREATE TABLE subscribers (
        id           INTEGER PRIMARY KEY,
        partner      TEXT NOT NULL,
        email_key    TEXT NOT NULL,
        email        TEXT NOT NULL,
        first_name   TEXT,
        last_name    TEXT,
        segment_code TEXT,
        opted_out    INTEGER NOT NULL DEFAULT 0,
        seen_in      INTEGER,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        removed_at   TEXT
    );
    CREATE UNIQUE INDEX subscribers_by_email ON subscribers(partner, email_key);
    """,
    # 4: engagement events (activity feeds) and the organisation's message log (messages feeds)
    """
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        partner     TEXT NOT NULL,
        event_id    TEXT NOT NULL,
        contact_id  TEXT NOT NULL,
        action      TEXT,
        time        TEXT NOT NULL,
        fields      TEXT NOT NULL DEFAULT '{}',
        imported_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX events_by_id ON events(partner, event_id);
    CREATE INDEX events_by_contact ON events(partner, contact_id);
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        partner         TEXT NOT NULL,
        message_key     TEXT NOT NULL,
        contact_id      TEXT NOT NULL,
        channel         TEXT NOT NULL,
        timestamp       TEXT NOT NULL,
        direction       TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
        body            TEXT NOT NULL,
        outgoing_source TEXT,
        campaign_id     TEXT,
        campaign_name   TEXT,
        script_id       TEXT,
        script_name     TEXT,
        media           TEXT,
        imported_at     TEXT NOT NULL
    );
    CREATE UNIQUE INDEX messages_by_key ON messages(partner, message_key);
    CREATE INDEX messages_by_time ON messages(partner, timestamp);
    """,
]

RUN_COLUMNS = (
    "id", "partner", "feed", "kind", "trigger", "file", "sha256", "rows_in_file", "rows_applied",
    "rows_rejected", "started", "finished", "status", "reason", "details", "error_file",
)  # fmt: skip


class SchemaError(RuntimeError):
    """The database was written by a newer dropd, or is not a dropd store."""


class NoStoreYet(SchemaError):
    """A read-only open found no store: the daemon has never started with this state_dir."""


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunRecord:
    id: int
    partner: str
    feed: str
    kind: str
    trigger: str
    file: str | None
    sha256: str | None
    rows_in_file: int | None
    rows_applied: int | None
    rows_rejected: int | None
    started: str
    finished: str | None
    status: str
    reason: str | None
    details: dict
    error_file: str | None

    def as_dict(self) -> dict:
        return {column: getattr(self, column) for column in RUN_COLUMNS}


class Store:
    def __init__(self, path: Path, read_only: bool = False):
        """Open (and migrate) the store; `read_only` opens an existing one as it is."""
        self.path = Path(path)
        self.read_only = read_only
        self._local = threading.local()
        self._writer = threading.RLock()
        self._writing: str | None = None
        self._waiting: dict[str, str] = {}
        if read_only:
            if not self.path.is_file():
                raise NoStoreYet(f"{self.path}: no store here yet; it is made when the daemon first starts")
            self._check_version(self.schema_version(self.connection))
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.migrate()

    @classmethod
    def for_config(cls, config, read_only: bool = False) -> "Store":
        if config.daemon.store != "sqlite":
            raise SchemaError(
                f"{config.file}: daemon.store: PostgreSQL stores are not supported by this version; use \"sqlite\""
            )
        return cls(config.daemon.state_dir / "dropd.db", read_only=read_only)

    def connect(self) -> sqlite3.Connection:
        """A new connection in autocommit mode; use `transaction()` around writes."""
        if self.read_only:
            uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
            connection = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=60, check_same_thread=False)
        else:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=60, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.row_factory = sqlite3.Row
        return connection

    @property
    def connection(self) -> sqlite3.Connection:
        """This thread's connection, for short reads and writes outside an import."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.connect()
        return connection

    @contextmanager
    def transaction(self, connection: sqlite3.Connection | None = None, commit: bool = True, label: str = "daemon"):
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on an error, or at the end when `commit` is False.

        `label` names the writer (a feed) while it holds or waits for its turn.
        """
        connection = connection or self.connection
        self._take_turn(label)
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT" if commit else "ROLLBACK")
        finally:
            self._writing = None
            self._writer.release()

    def _take_turn(self, label: str) -> None:
        if self._writer.acquire(blocking=False):
            self._writing = label
            return
        behind = self._writing
        log.info("run.queued", feed=label, behind=behind)
        self._waiting[label] = utc_now()
        try:
            self._writer.acquire()
        finally:
            self._waiting.pop(label, None)
        self._writing = label

    def waiting(self) -> dict:
        """Who writes now, and who waits for a turn since when."""
        return {"writing": self._writing, "waiting": dict(self._waiting)}

    @staticmethod
    def schema_version(connection) -> int:
        exists = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone()
        row = connection.execute("SELECT version FROM schema_version").fetchone() if exists else None
        return row[0] if row else 0

    def _check_version(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise SchemaError(
                f"{self.path}: schema version {version} is newer than this dropd knows ({len(MIGRATIONS)}); "
                "upgrade dropd or point state_dir elsewhere"
            )
        if self.read_only and version < len(MIGRATIONS):
            raise SchemaError(
                f"{self.path}: schema version {version} is older than this dropd needs ({len(MIGRATIONS)}); "
                "start the daemon once (it upgrades the store) and try again"
            )

    def migrate(self) -> None:
        """Bring the schema up to date; a store already current is only read."""
        version = self.schema_version(self.connection)
        self._check_version(version)
        if version == len(MIGRATIONS):
            return
        with self.transaction() as connection:
            connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = connection.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            self._check_version(version)
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        connection.execute(statement)
            if row:
                connection.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))
            else:
                connection.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))

    # Runs ---------------------------------------------------------------------------------

    def start_run(self, partner: str, feed: str, kind: str, trigger: str, file: str | None, sha256: str | None) -> int:
        with self.transaction(label=feed) as connection:
            cursor = connection.execute(
                "INSERT INTO runs (partner, feed, kind, trigger, file, sha256, started, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (partner, feed, kind, trigger, file, sha256, utc_now()),
            )
            return cursor.lastrowid

    def finish_run(
        self,
        connection: sqlite3.Connection,
        run_id: int,
        status: str,
        reason: str | None = None,
        rows_in_file: int | None = None,
        rows_applied: int | None = None,
        rows_rejected: int | None = None,
        details: dict | None = None,
        error_file: str | None = None,
    ) -> None:
        """Close a run; called inside the import's transaction so both commit together."""
        connection.execute(
            "UPDATE runs SET status = ?, reason = ?, rows_in_file = ?, rows_applied = ?, rows_rejected = ?, "
            "details = ?, error_file = ?, finished = ? WHERE id = ?",
            (status, reason, rows_in_file, rows_applied, rows_rejected, json.dumps(details or {}), error_file,
             utc_now(), run_id),
        )  # fmt: skip

    def record_run(self, partner, feed, kind, trigger, status, reason, file=None, sha256=None, details=None) -> int:
        """A run that did no work (skipped, or failed before starting), recorded in one step."""
        run_id = self.start_run(partner, feed, kind, trigger, file, sha256)
        with self.transaction(label=feed) as connection:
            self.finish_run(connection, run_id, status, reason, details=details)
        return run_id

    def add_row_errors(self, connection, run_id: int, errors: list[tuple]) -> None:
        connection.executemany(
            "INSERT INTO run_errors (run_id, row_number, code, failure_type, message) VALUES (?, ?, ?, ?, ?)",
            [(run_id, *error) for error in errors],
        )

    def mark_interrupted_runs(self) -> list[tuple[int, str]]:
        """Runs left `running` by a daemon that died: failed now. Returns (run id, feed) pairs."""
        with self.transaction() as connection:
            ids = [tuple(row) for row in connection.execute("SELECT id, feed FROM runs WHERE status = 'running'")]
            connection.execute(
                "UPDATE runs SET status = 'failed', reason = 'interrupted: the daemon stopped during the run; "
                "nothing was applied', finished = ? WHERE status = 'running'",
                (utc_now(),),
            )
        return ids

    def runs(self, feed: str | None = None, status: str | None = None, limit: int = 50) -> list[RunRecord]:
        query, params = "SELECT * FROM runs WHERE 1=1", []
        if feed:
            query += " AND feed = ?"
            params.append(feed)
        if status:
            query += " AND status = ?"
            params.append(status)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_run_record(row) for row in self.connection.execute(query, params)]

    def last_runs(self) -> list[RunRecord]:
        """The newest finished run of each feed."""
        rows = self.connection.execute(
            "SELECT * FROM runs WHERE id IN (SELECT MAX(id) FROM runs WHERE status != 'running' GROUP BY feed) ORDER BY feed"
        )
        return [_run_record(row) for row in rows]

    def run(self, run_id: int) -> RunRecord:
        return _run_record(self.connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())

    # File ledger and schedule claims -----------------------------------------------------------

    def imported_by(self, feed: str, sha256: str) -> int | None:
        row = self.connection.execute(
            "SELECT run_id FROM imported_files WHERE feed = ? AND sha256 = ?", (feed, sha256)
        ).fetchone()
        return row[0] if row else None

    def record_import(self, connection, feed: str, sha256: str, file: str, run_id: int) -> None:
        connection.execute(
            "INSERT OR REPLACE INTO imported_files (feed, sha256, file, run_id, imported_at) VALUES (?, ?, ?, ?, ?)",
            (feed, sha256, file, run_id, utc_now()),
        )

    def claim_window(self, feed: str, window: str) -> bool:
        """True for the first caller only: a window runs once, whatever restarts or clocks do."""
        with self.transaction(label=feed) as connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO window_claims (feed, window, claimed_at) VALUES (?, ?, ?)",
                (feed, window, utc_now()),
            )
            return cursor.rowcount == 1

    # Row digests -------------------------------------------------------------------------

    @staticmethod
    def partner_version(connection, partner: str) -> int:
        row = connection.execute("SELECT version FROM partner_versions WHERE partner = ?", (partner,)).fetchone()
        return row[0] if row else 0

    def bump_partner_version(self, connection, partner: str) -> int:
        """Any run that changes a partner's contacts calls this, inside its transaction."""
        version = self.partner_version(connection, partner) + 1
        connection.execute(
            "INSERT INTO partner_versions (partner, version) VALUES (?, ?) "
            "ON CONFLICT (partner) DO UPDATE SET version = excluded.version",
            (partner, version),
        )
        return version

    def row_digests(self, connection, feed: str, partner: str) -> DigestTable | None:
        """The feed's last clean rows, if nothing has changed the partner's contacts since."""
        row = connection.execute(
            "SELECT version, digests FROM feed_row_digests WHERE feed = ? AND partner = ?", (feed, partner)
        ).fetchone()
        if row is None or row[0] != self.partner_version(connection, partner):
            return None
        return DigestTable.from_bytes(row[1])

    @staticmethod
    def save_row_digests(connection, feed: str, partner: str, version: int, table: DigestTable) -> None:
        connection.execute(
            "INSERT INTO feed_row_digests (feed, partner, version, digests) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (feed) DO UPDATE SET partner = excluded.partner, version = excluded.version, "
            "digests = excluded.digests",
            (feed, partner, version, table.to_bytes()),
        )

    # Contacts ---------------------------------------------------------------------------

    def contacts(self, partner: str) -> list[dict]:
        result = []
        for row in self.connection.execute(
            "SELECT contact_id, crm_id, first_name, last_name, mobile_number, email, staff_id, opted_out, custom, "
            "created_at, updated_at FROM contacts WHERE partner = ? ORDER BY contact_id",
            (partner,),
        ):
            contact = dict(row)
            contact["opted_out"] = bool(contact["opted_out"])
            contact["custom"] = json.loads(contact["custom"])
            result.append(contact)
        return result

    def subscribers(self, partner: str, include_removed: bool = False) -> list[dict]:
        query = (
            "SELECT email, first_name, last_name, segment_code, opted_out, created_at, updated_at, removed_at "
            "FROM subscribers WHERE partner = ?"
        )
        if not include_removed:
            query += " AND removed_at IS NULL"
        rows = [dict(row) for row in self.connection.execute(query + " ORDER BY email_key", (partner,))]
        for row in rows:
            row["opted_out"] = bool(row["opted_out"])
        return rows

    def events(self, partner: str) -> list[dict]:
        rows = self.connection.execute(
            "SELECT event_id, contact_id, action, time, fields FROM events WHERE partner = ? ORDER BY time, event_id",
            (partner,),
        )
        return [dict(row, fields=json.loads(row["fields"])) for row in rows]

    def messages(self, partner: str) -> list[dict]:
        rows = self.connection.execute(
            "SELECT contact_id, channel, timestamp, direction, body, outgoing_source, campaign_id, campaign_name, "
            "script_id, script_name, media FROM messages WHERE partner = ? ORDER BY timestamp, id",
            (partner,),
        )
        return [dict(row) for row in rows]

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def _run_record(row) -> RunRecord:
    values = dict(row)
    values["details"] = json.loads(values["details"] or "{}")
    return RunRecord(**values)
