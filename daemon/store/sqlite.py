"""The SQLite backend (WAL): connections, migrations and the writers' turns.

Connections are per thread, and end with their thread: the daemon starts a thread for each
run and each control request, and a connection left behind by each held three descriptors
for good. SQLite has one writer at a time, and an import is one
transaction for its whole file, so in the daemon writers take turns on a lock of their own
instead of timing out on SQLite's: a second feed's run waits for the first one's import,
logged as `run.queued`, and is listed by `waiting()`. Readers never wait: WAL lets them read
the last commit while a transaction is open, and read-only opens neither write nor migrate.
"""

import functools
import itertools
import sqlite3
import threading
import urllib.parse
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from daemon.clock import utc_stamp
from daemon.store.migrations import Migrations
from daemon.store.records import KeyTaken, NoStoreYet
from daemon.store.repositories import PARAMETERS_PER_STATEMENT, Transaction

log = structlog.get_logger("dropd.store")

MIGRATIONS = Migrations("sqlite")
BLOB_CHUNK = 1 << 20


@functools.lru_cache(maxsize=64)
def _marks(columns: int, rows: int) -> str:
    """The VALUES list of a multi-row INSERT."""
    return ", ".join([f"({', '.join('?' * columns)})"] * rows)


class _Connection(sqlite3.Connection):
    """A connection whose bulk inserts finish in a thread of their own (`insert_rows`): every
    other statement on it waits for the last one first, and meets its error if it failed."""

    checks_keys_later = True
    arrays = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._staged: str | None = None
        """The staging table the last bulk insert read from, emptied once it is done."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self.settle()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, rows: Any, /) -> sqlite3.Cursor:
        self.settle()
        return super().executemany(sql, rows)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.join()
        super().close()

    def stream(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        """Rows one at a time: SQLite's cursor is lazy already."""
        return self.execute(sql, parameters)

    def lock_for_transaction(self, name: str) -> None:
        """SQLite has one writer at a time: a transaction excludes every other already."""

    def settle(self) -> None:
        """Wait for the last bulk insert; raise what stopped it, if anything did (`KeyTaken`
        when a unique key was taken: the statement wrote nothing, the transaction goes on)."""
        if self._pending is None:
            return
        failure = self._finish()
        if isinstance(failure, sqlite3.IntegrityError) and failure.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE":
            raise KeyTaken(str(failure)) from failure
        if failure is not None:
            raise failure

    def abandon(self) -> None:
        """Wait for the last bulk insert and forget how it ended: the transaction rolls back."""
        if self._pending is not None:
            self._finish()

    def _finish(self) -> BaseException | None:
        assert self._pending is not None
        self._pending.join()
        self._pending = None
        failure, self._failure = self._failure, None
        super().execute(f"DELETE FROM temp.{self._staged}")
        return failure

    def put_blobs(self, table: str, key_column: str, key: Any, blobs: dict[str, memoryview]) -> None:
        """Set the blob columns of one row in place, a MiB at a time: binding a blob makes SQLite
        copy it whole first (a first import's digest set is 24 MiB at 1.5M rows)."""
        for column, data in blobs.items():
            rowid = self.execute(
                f"UPDATE {table} SET {column} = zeroblob(?) WHERE {key_column} = ? RETURNING rowid", (len(data), key)
            ).fetchone()[0]
            with self.blobopen(table, column, rowid) as blob:
                for start in range(0, len(data), BLOB_CHUNK):
                    blob.write(data[start : start + BLOB_CHUNK])

    def get_blobs(
        self, table: str, key_column: str, key: Any, columns: tuple[str, ...]
    ) -> dict[str, bytes | bytearray] | None:
        """The blob columns of one row, as SQLite hands them over (one copy each)."""
        row = self.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {key_column} = ?", (key,)).fetchone()
        return None if row is None else dict(zip(columns, row, strict=True))

    def insert_rows(
        self, table: str, columns: tuple[str, ...], conflict: str, rows: list[Any], fixed: tuple[Any, ...] = ()
    ) -> None:
        """`INSERT INTO table (columns) VALUES (...) <conflict>` for each of `rows`, in order;
        `fixed` holds (column, value) pairs every row has too.

        The rows go into a temporary table without indexes first; a thread then moves them
        into `table` by one INSERT ... SELECT, which updates the table's indexes without the
        GIL while the import reads its next batch (on two cores, most of the time SQLite
        spends on a batch is hidden; bench/import.py)."""
        self._stage(table, columns, rows)
        self._move_staged(table, columns, dict(fixed), conflict)

    def insert_keyed(self, table: str, columns: tuple[str, ...], rows: list[Any], fixed: dict[str, Any]) -> list[int]:
        """`insert_rows` for new rows of a table keyed by `id`, each with the columns of `fixed`
        too; returns their keys, in order. The keys are the ones SQLite would give (one more
        than the largest, row after row), given here so that the rows can be written in the
        background."""
        self._stage(table, columns, rows)
        first = super().execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]
        offset = super().execute(f"SELECT min(rowid) FROM temp.{self._staged}").fetchone()[0] or 1
        self._move_staged(table, columns, fixed, "", key_offset=first - offset)
        return list(range(first, first + len(rows)))

    def _move_staged(
        self, table: str, columns: tuple[str, ...], fixed: dict[str, Any], conflict: str, key_offset: int | None = None
    ) -> None:
        """Start moving the staged rows into `table`, in order, with the values of `fixed` (and,
        given `key_offset`, each row's `id`: its staging rowid plus the offset)."""
        targets, sources, parameters = [*columns, *fixed], [*columns, *"?" * len(fixed)], [*fixed.values()]
        if key_offset is not None:
            targets, sources, parameters = ["id", *targets], ["rowid + ?", *sources], [key_offset, *parameters]
        self._start(
            f"INSERT INTO {table} ({', '.join(targets)}) SELECT {', '.join(sources)} "
            f"FROM temp.{self._staged} ORDER BY rowid {conflict}",
            tuple(parameters),
        )

    def _stage(self, table: str, columns: tuple[str, ...], rows: list[Any]) -> None:
        """`rows` into a staging table for `table` and `columns`, by multi-row INSERTs (a third
        faster than `executemany`, which steps SQLite once a row)."""
        self.settle()
        self._staged = f"staging_{table}_{zlib.crc32(' '.join(columns).encode()):08x}"
        super().execute(f"CREATE TEMP TABLE IF NOT EXISTS {self._staged} ({', '.join(columns)})")
        step = PARAMETERS_PER_STATEMENT // len(columns)
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            sql = f"INSERT INTO temp.{self._staged} VALUES {_marks(len(columns), len(chunk))}"
            super().execute(sql, list(itertools.chain.from_iterable(chunk)))

    def _start(self, move: str, parameters: tuple[Any, ...] = ()) -> None:
        started = threading.Event()
        self._pending = threading.Thread(target=self._move, args=(move, parameters, started))
        self._pending.start()
        # Until it is inside SQLite (where it lets go of the GIL) the thread needs the GIL, which
        # a busy import would hand over only every few milliseconds: wait for it to get there.
        started.wait()

    def _move(self, move: str, parameters: tuple[Any, ...], started: threading.Event) -> None:
        started.set()
        try:
            super().execute(move, parameters)
        except BaseException as exc:  # raised where the connection is next used (`settle`)
            self._failure = exc


class SqliteStore:
    def __init__(self, path: Path, read_only: bool = False):
        """Open (and migrate) the store at `path`; `read_only` opens an existing one as it is."""
        self.path = Path(path)
        self.read_only = read_only
        self._local = threading.local()
        self._by_thread: dict[threading.Thread, sqlite3.Connection] = {}
        """Every open connection, by the thread it is for; those of ended threads are closed."""
        self._threads_lock = threading.Lock()
        self._writer = threading.RLock()
        self._writing: str | None = None
        self._waiting: dict[str, str] = {}
        if read_only:
            if not self.path.is_file():
                raise NoStoreYet(f"{self.path}: no store here yet; it is made when the daemon first starts")
            self._check_version(self._schema_version(self._connection()))
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()

    def close(self) -> None:
        """Close this thread's connection (the others close once their threads have ended)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            with self._threads_lock:
                self._by_thread.pop(threading.current_thread(), None)
            connection.close()
            self._local.connection = None

    # Transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self, label: str = "daemon", commit: bool = True) -> Iterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT, yielding the repositories; ROLLBACK on an error, or at
        the end when `commit` is False (a dry run). `label` names the writer (a feed) while it
        holds or waits for its turn."""
        connection = self._connection()
        self._take_turn(label)
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(connection)
                connection.settle()  # a bulk insert that failed fails the transaction
            except BaseException:
                connection.abandon()
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT" if commit else "ROLLBACK")
        finally:
            self._writing = None
            self._writer.release()

    @contextmanager
    def reading(self) -> Iterator[Transaction]:
        """A consistent snapshot to read from; never waits for a writer."""
        connection = self._connection()
        connection.execute("BEGIN")
        try:
            yield Transaction(connection)
        finally:
            connection.execute("ROLLBACK")

    def waiting(self) -> dict[str, Any]:
        """Who writes now, and who waits for a turn since when."""
        return {"writing": self._writing, "waiting": dict(self._waiting)}

    def _take_turn(self, label: str) -> None:
        if self._writer.acquire(blocking=False):
            self._writing = label
            return
        log.info("run.queued", feed=label, behind=self._writing)
        self._waiting[label] = utc_stamp()
        try:
            self._writer.acquire()
        finally:
            self._waiting.pop(label, None)
        self._writing = label

    # Connections and schema ----------------------------------------------------------------

    def _connection(self) -> _Connection:
        """This thread's connection, in autocommit mode (transactions are explicit). A thread's
        first use closes the connections of the threads that have ended since."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            self._close_ended()
            connection = self._local.connection = self._connect()
            with self._threads_lock:
                self._by_thread[threading.current_thread()] = connection
        return connection

    def _close_ended(self) -> None:
        with self._threads_lock:
            ended = [thread for thread in self._by_thread if not thread.is_alive()]
            connections = [self._by_thread.pop(thread) for thread in ended]
        for connection in connections:
            connection.close()

    def _connect(self) -> _Connection:
        if self.read_only:
            uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
            connection = sqlite3.connect(
                uri, uri=True, isolation_level=None, timeout=60, check_same_thread=False, factory=_Connection
            )
        else:
            connection = sqlite3.connect(
                self.path, isolation_level=None, timeout=60, check_same_thread=False, factory=_Connection
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.row_factory = sqlite3.Row
        return connection

    @staticmethod
    def _schema_version(connection: _Connection) -> int:
        exists = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone()
        row = connection.execute("SELECT version FROM schema_version").fetchone() if exists else None
        return row[0] if row else 0

    def _check_version(self, version: int) -> None:
        MIGRATIONS.check(version, self.read_only, str(self.path))

    def _migrate(self) -> None:
        """Bring the schema up to date; a store already current is only read."""
        connection = self._connection()
        version = self._schema_version(connection)
        self._check_version(version)
        if version == MIGRATIONS.latest:
            return
        with self.transaction():
            connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = connection.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            self._check_version(version)
            for number, statements in MIGRATIONS.after(version):
                for statement in statements:
                    connection.execute(statement)
                log.info("store.migrated", version=number)
            if row:
                connection.execute("UPDATE schema_version SET version = ?", (MIGRATIONS.latest,))
            else:
                connection.execute("INSERT INTO schema_version VALUES (?)", (MIGRATIONS.latest,))
