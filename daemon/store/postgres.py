"""The PostgreSQL backend (psycopg 3): several dropd instances share one database.

Each transaction borrows a connection from a pool (psycopg_pool) and gives it back at its
end. PostgreSQL takes concurrent writers itself, so there is no writers' turn here: two feeds import side by side, each in its own transaction.
Migrations run under an advisory lock, so instances starting together migrate once. The
repositories' SQL is the same as SQLite's; the only translation is the placeholder style
(`?` to `%s`), done once per statement. The password comes from a file (or a systemd
credential), never from the URL, and is never logged: `redacted()` shows the URL without it.
"""

import functools
import hashlib
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
import psycopg_pool
import structlog

from daemon.store.migrations import Migrations
from daemon.store.records import KeyTaken, NoStoreYet, SchemaError, StoreUnavailable
from daemon.store.repositories import Transaction, insert_returning_keys

log = structlog.get_logger("dropd.store")

MIGRATIONS = Migrations("postgres")
MIGRATION_LOCK = 0x64726F7064  # "dropd": pg_advisory_lock key taken while migrating
POOL_WAIT = 10.0
"""Seconds a transaction waits for a connection (the server down: the pool cannot make one)."""
UNAVAILABLE_STATES = {"57P01", "57P02", "57P03"}
"""admin_shutdown, crash_shutdown, cannot_connect_now: the server going down or starting up."""
BLOB_CHUNK = 4 << 20
"""Bytes of a blob read or written by one statement."""
COPY_FROM = 200
"""Rows from which a bulk insert goes through COPY into a staging table; fewer are INSERTed."""


class _Row(tuple[Any, ...]):
    """A result row readable by position, by column name, and as a mapping (like sqlite3.Row)."""

    __slots__ = ()
    names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    names = tuple(column.name for column in cursor.description or ())
    row_class = type("Row", (_Row,), {"__slots__": (), "names": names})
    return lambda values: row_class(values)


class _Connection:
    """The subset of a DB-API connection the repositories use, with `?` placeholders.

    A bulk insert (`insert_rows`, `insert_keyed` of COPY_FROM rows or more) is copied into a
    staging table here, then moved into its table by a thread of its own, as SQLite's are:
    PostgreSQL updates the table's indexes while the import reads and checks its next batch
    (on two cores a first import of 1M contacts spent half its time waiting for the server).
    Every other use of the connection waits for that statement first, and meets its error."""

    checks_keys_later = True
    arrays = True

    def __init__(self, connection: psycopg.Connection[Any]):
        self.raw = connection
        self._locks: set[str] = set()
        """Advisory locks this transaction holds (a wrapper lives for one transaction)."""
        self._staging_ready: set[str] = set()
        """Staging tables made (or found) in this transaction."""
        self._key_taken: psycopg.errors.UniqueViolation | None = None
        """How the last `insert_keyed` was turned down, for `settle` to raise."""
        self._pending: threading.Thread | None = None
        """The bulk insert running in the background, if one is."""
        self._failure: BaseException | None = None
        """What stopped it (other than a unique key taken)."""
        self._savepoint = False
        """Whether the bulk insert in the background runs inside the savepoint insert_keyed."""
        self._sequences: dict[str, str] = {}
        """Each keyed table's id sequence, once asked for."""

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def _sql(sql: str) -> str:
        """The statement with psycopg's placeholders; the last 1,024 kept (the repositories'
        statements are a few hundred; batch sizes make more, and an unbounded cache grew)."""
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._wait()
        return self.raw.execute(self._sql(sql), tuple(params))

    def settle(self) -> None:
        """Wait for the last bulk insert; raise `KeyTaken` when the last `insert_keyed` found a
        unique key taken (it wrote nothing of its rows; the transaction goes on), as SQLite's
        background insert does, or what else stopped it."""
        self._wait()
        if self._key_taken is not None:
            taken, self._key_taken = self._key_taken, None
            raise KeyTaken(str(taken).splitlines()[0]) from taken

    def abandon(self) -> None:
        """Wait for the last bulk insert and forget how it ended: the transaction rolls back."""
        if self._pending is not None:
            self._pending.join()
            self._pending = self._failure = self._key_taken = None

    def _wait(self) -> None:
        """Wait for the bulk insert in the background, if one runs, and end its savepoint:
        kept, or rolled back to when a unique key was taken; raise anything else that stopped it."""
        if self._pending is None:
            return
        self._pending.join()
        self._pending = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        if self._key_taken is not None:
            self.raw.execute("ROLLBACK TO SAVEPOINT insert_keyed")
        elif self._savepoint:
            self.raw.execute("RELEASE SAVEPOINT insert_keyed")
        self._savepoint = False

    def _in_background(self, statement: str, params: Sequence[Any]) -> None:
        """Run one statement in a thread of its own (see the class); inside a savepoint (made
        by the caller), a unique key taken is kept for `_wait` and `settle`.

        One statement, because the thread lets go of the GIL while the server works and needs
        it back each time an answer comes: on two busy cores each time costs up to the
        interpreter's switch interval (5 ms), and a savepoint, a COPY and a release made
        in the thread doubled a first import's time waiting for it."""
        started = threading.Event()

        def run() -> None:
            started.set()
            try:
                self.raw.execute(statement, params)
            except psycopg.errors.UniqueViolation as taken:
                self._key_taken = taken
            except BaseException as exc:  # raised where the connection is next used (`_wait`)
                self._failure = exc

        self._pending = threading.Thread(target=run, name="dropd-store-insert", daemon=True)
        self._pending.start()
        started.wait()  # until the thread has the GIL once, a busy import would keep it waiting

    def lock_for_transaction(self, name: str) -> None:
        """A lock on `name` held until this transaction ends (pg_advisory_xact_lock); asked
        again (an opt-out event per row of an activity file), it costs no round trip."""
        if name not in self._locks:
            self._wait()
            self.raw.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
            self._locks.add(name)

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows as the server sends them, without fetching the whole result first."""
        self._wait()
        with self.raw.cursor() as cursor:
            yield from cursor.stream(self._sql(sql), tuple(params))

    def put_blobs(self, table: str, key_column: str, key: Any, blobs: dict[str, memoryview]) -> None:
        """Set the blob (bytea) columns of one row, BLOB_CHUNK bytes at a time: a value sent
        whole is held twice more while it goes (psycopg's parameter and libpq's buffer; 32 MiB
        each at 1M contacts)."""
        self._wait()
        cursor = self.raw.cursor(binary=True)
        cursor.execute(
            f"UPDATE {table} SET {', '.join(f'{column} = %b' for column in blobs)} WHERE {key_column} = %s",
            (*(data[:BLOB_CHUNK] for data in blobs.values()), key),
        )
        for column, data in blobs.items():
            for start in range(BLOB_CHUNK, len(data), BLOB_CHUNK):
                cursor.execute(
                    f"UPDATE {table} SET {column} = {column} || %b WHERE {key_column} = %s",
                    (data[start : start + BLOB_CHUNK], key),
                )

    def get_blobs(
        self, table: str, key_column: str, key: Any, columns: tuple[str, ...]
    ) -> dict[str, bytes | bytearray] | None:
        """The blob (bytea) columns of one row, read BLOB_CHUNK bytes at a time into one buffer
        each (whole, in text, a 16 MiB set took 54 MiB to read at 1M contacts)."""
        self._wait()
        cursor = self.raw.cursor(binary=True)
        lengths = cursor.execute(
            f"SELECT {', '.join(f'octet_length({column})' for column in columns)} FROM {table} WHERE {key_column} = %s",
            (key,),
        ).fetchone()
        if lengths is None:
            return None
        blobs: dict[str, bytes | bytearray] = {}
        for column, length in zip(columns, lengths, strict=True):
            buffer = bytearray(length or 0)
            for start in range(0, len(buffer), BLOB_CHUNK):
                piece = _first(
                    cursor.execute(
                        f"SELECT substring({column} FROM %s FOR %s) FROM {table} WHERE {key_column} = %s",
                        (start + 1, BLOB_CHUNK, key),
                    ).fetchone()
                )
                buffer[start : start + len(piece)] = piece
            blobs[column] = buffer
        return blobs

    def insert_rows(
        self, table: str, columns: tuple[str, ...], conflict: str, rows: list[Any], fixed: tuple[Any, ...] = ()
    ) -> None:
        """`INSERT INTO table (columns) VALUES (...) <conflict>` for each of `rows`, in order;
        `fixed` holds (column, value) pairs every row has too. Many rows go through COPY, then
        into the table in the background (see the class)."""
        self._wait()
        if len(rows) >= COPY_FROM:
            staging = self._staged(table, columns, rows)
            names, values = ", ".join(columns), [value for _, value in fixed]
            extra = "".join(f", {column}" for column, _ in fixed)
            marks = ", %s" * len(fixed)
            statement = (
                f"INSERT INTO {table} ({names}{extra}) SELECT {names}{marks} FROM {staging} ORDER BY ord {conflict}"
            )
            self._in_background(statement, values)
            return
        columns = (*columns, *(column for column, _ in fixed))
        if fixed:
            same = tuple(value for _, value in fixed)
            rows = [(*row, *same) for row in rows]
        marks = ", ".join("?" * len(columns))
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) {conflict}", rows)

    def insert_keyed(self, table: str, columns: tuple[str, ...], rows: list[Any], fixed: dict[str, Any]) -> list[int]:
        """New rows of a table keyed by `id` (from its sequence), each with the columns of
        `fixed` too; returns their keys, in order. The first column is unique among them.
        Many rows go through COPY into a staging table, then one INSERT ... SELECT.

        The table's unique keys check the rows (no lookup first): when one is taken, nothing
        of the rows is written (a savepoint is rolled back) and `settle` raises `KeyTaken` (the
        caller then takes the rows one at a time; the keys returned stay unused).

        Many rows take their keys from the table's sequence first (in the round trip that
        makes the savepoint and empties the staging table), are copied into the staging
        table, and are moved into the table with their keys in the background (see the
        class). When the keys drawn are not one run (another session drew some meanwhile)
        they are let go, and the rows are written here with keys the sequence gives them."""
        self._wait()
        staging = None
        if len(rows) >= COPY_FROM:
            staging = self._staging(table, columns)
            first = self._draw_keys(table, len(rows), staging)  # the savepoint made, staging emptied
            self._copy_into(staging, columns, rows)
            if first is not None:
                self._savepoint = True
                names = ", ".join(columns)
                marks = ", %s" * len(fixed)
                self._in_background(
                    f"INSERT INTO {table} (id, {names}{''.join(f', {column}' for column in fixed)}) "
                    f"OVERRIDING SYSTEM VALUE SELECT ord + %s, {names}{marks} FROM {staging} ORDER BY ord",
                    (first, *fixed.values()),
                )
                return list(range(first, first + len(rows)))
        else:
            self.raw.execute("SAVEPOINT insert_keyed")
        try:
            keys = self._insert_keyed(table, columns, rows, fixed, staging)
        except psycopg.errors.UniqueViolation as taken:
            self.raw.execute("ROLLBACK TO SAVEPOINT insert_keyed")
            self._key_taken = taken
            return [0] * len(rows)
        self.raw.execute("RELEASE SAVEPOINT insert_keyed")
        return keys

    def _insert_keyed(
        self, table: str, columns: tuple[str, ...], rows: list[Any], fixed: dict[str, Any], staging: str | None
    ) -> list[int]:
        """The rows written here, with keys from the table's sequence: by multi-row INSERTs, or
        from `staging` (filled already) when given."""
        if staging is None:
            same = tuple(fixed.values())
            keys = insert_returning_keys(self, table, (*columns, *fixed), columns[0], [(*row, *same) for row in rows])
            return [keys[row[0]] for row in rows]
        names = ", ".join(columns)
        extra = "".join(f", {column}" for column in fixed)
        marks = ", %s" * len(fixed)
        found = self.raw.execute(
            f"INSERT INTO {table} ({names}{extra}) SELECT {names}{marks} FROM {staging} ORDER BY ord "
            f"RETURNING id, {columns[0]}",
            tuple(fixed.values()),
        ).fetchall()
        keys = {natural: key for key, natural in found}
        return [keys[row[0]] for row in rows]

    def _draw_keys(self, table: str, count: int, staging: str) -> int | None:
        """Make the savepoint insert_keyed, empty `staging` and draw `count` keys from
        `table`'s id sequence, in one round trip: the first key when they are one run, else
        None."""
        sequence = self._sequences.get(table)
        if sequence is None:
            sequence = self._sequences[table] = _first(
                self.raw.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()
            )
        draw = psycopg.sql.SQL(
            "SAVEPOINT insert_keyed; TRUNCATE {}; SELECT min(key), max(key) FROM "
            "(SELECT nextval({}::regclass) AS key FROM generate_series(1, {})) drawn"
        ).format(psycopg.sql.Identifier(staging), psycopg.sql.Literal(sequence), psycopg.sql.Literal(count))
        with self.raw.cursor() as cursor:
            cursor.execute(draw)
            cursor.nextset()
            cursor.nextset()
            drawn = cursor.fetchone()
        assert drawn is not None, "an aggregate always gives a row"
        low, high = drawn
        return int(low) if high - low + 1 == count else None

    def _staged(self, table: str, columns: tuple[str, ...], rows: list[Any]) -> str:
        """`rows` copied into this session's staging table for `table`'s `columns`, emptied
        first; each row numbered in `ord`, its place in `rows`."""
        staging = self._staging(table, columns)
        self.raw.execute(f"TRUNCATE {staging}")
        self._copy_into(staging, columns, rows)
        return staging

    def _staging(self, table: str, columns: tuple[str, ...]) -> str:
        """This session's staging table for `table`'s `columns` (made at first use): those
        columns and `ord`, each row's place in its batch."""
        staging = f"stage_{table}_{hashlib.sha256(','.join(columns).encode()).hexdigest()[:10]}"
        if staging not in self._staging_ready:
            self.raw.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
                f"SELECT {', '.join(columns)}, 0::bigint AS ord FROM {table} WITH NO DATA"
            )
            self._staging_ready.add(staging)
        return staging

    def _copy_into(self, staging: str, columns: tuple[str, ...], rows: list[Any]) -> None:
        """`rows` appended to `staging` (COPY ... FROM STDIN), each numbered in `ord`."""
        with self.raw.cursor() as cursor, cursor.copy(f"COPY {staging} ({', '.join(columns)}, ord) FROM STDIN") as copy:
            for number, row in enumerate(rows):
                copy.write_row((*row, number))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        self._wait()
        with self.raw.cursor() as cursor:
            cursor.executemany(self._sql(sql), list(rows))
            return cursor


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the server cannot be reached now, by its SQLSTATE: class 08
    (connection exception) or a shutdown or start-up in progress; no SQLSTATE at all is a
    connection that failed before the server answered. A statement's own error (a unique key,
    a lock timeout) is not."""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith("08") or state in UNAVAILABLE_STATES


def _custom_plans(connection: psycopg.Connection[Any]) -> None:
    """Plan each statement for its own values. An import's tables grow inside its transaction,
    unanalysed; psycopg prepares a statement run five times, and the generic plan PostgreSQL
    then keeps, made while a table was small, scans it whole (a first import of 100,000
    contacts took minutes instead of seconds; bench/import.py --store postgresql)."""
    connection.execute("SET plan_cache_mode = force_custom_plan")


def connection_info(url: str, password_file: Path | None) -> dict[str, Any]:
    """Keyword arguments for psycopg.connect: the URL's parts, the password from its file."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password:
        raise SchemaError("daemon.store: the URL must not hold a password; use daemon.store_password_file")
    info = {"conninfo": url}
    if password_file is not None:
        info["password"] = password_file.read_text(encoding="utf-8").strip("\r\n")
    return info


def redacted(url: str) -> str:
    """The URL with any password in it (user:password@, ?password=) starred out."""
    url = re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


class PostgresStore:
    def __init__(
        self, url: str, password_file: Path | None = None, read_only: bool = False, max_connections: int = 20
    ) -> None:
        self.url = url
        self.read_only = read_only
        info = connection_info(url, password_file)
        conninfo = info.pop("conninfo")
        self._pool = psycopg_pool.ConnectionPool(
            conninfo, kwargs={**info, "autocommit": True, "row_factory": _row_factory},
            min_size=1, max_size=max_connections, open=False, name="dropd", configure=_custom_plans,
        )  # fmt: skip
        try:
            self._pool.open(wait=True, timeout=15)
        except psycopg_pool.PoolTimeout:
            self._pool.close()
            raise SchemaError(f"daemon.store: cannot connect to {redacted(url)}: {_why_not(conninfo, info)}") from None
        try:
            if read_only:
                with self._connection() as connection:
                    version = self._schema_version(connection)
                if version == 0:
                    raise NoStoreYet(
                        f"{redacted(url)}: no dropd store in this database yet; it is made when the daemon first starts"
                    )
                MIGRATIONS.check(version, True, redacted(url))
            else:
                self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        self._pool.close()

    # Transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self, label: str = "daemon", commit: bool = True) -> Iterator[Transaction]:
        with self._connection() as connection:
            connection.raw.execute("BEGIN")
            try:
                yield Transaction(connection)
                connection.settle()  # a bulk insert that failed fails the transaction
            except BaseException:
                connection.abandon()
                connection.raw.execute("ROLLBACK")
                raise
            connection.raw.execute("COMMIT" if commit else "ROLLBACK")

    @contextmanager
    def reading(self) -> Iterator[Transaction]:
        """A consistent snapshot (REPEATABLE READ, read only)."""
        with self._connection() as connection:
            connection.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield Transaction(connection)
            finally:
                connection.raw.execute("ROLLBACK")

    def waiting(self) -> dict[str, Any]:
        """PostgreSQL takes concurrent writers: nobody waits for a turn here."""
        return {"writing": None, "waiting": {}}

    # Connections and schema ----------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[_Connection]:
        """A connection for one transaction; `StoreUnavailable` when the server cannot be
        reached or goes away (classified by SQLSTATE, `unavailable`)."""
        try:
            with self._pool.connection(timeout=POOL_WAIT) as raw:
                yield _Connection(raw)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            if unavailable(exc):
                raise StoreUnavailable(f"the PostgreSQL store cannot be reached: {_first_line(exc)}") from exc
            raise

    @staticmethod
    def _schema_version(connection: _Connection) -> int:
        exists = _first(connection.raw.execute("SELECT to_regclass('schema_version')").fetchone())
        if exists is None:
            return 0
        version = _first(connection.raw.execute("SELECT version FROM schema_version").fetchone())
        return int(version) if version is not None else 0

    def _migrate(self) -> None:
        """Under an advisory lock: instances starting together migrate once."""
        with self._connection() as connection:
            connection.raw.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                version = self._schema_version(connection)
                MIGRATIONS.check(version, False, redacted(self.url))
                if version == MIGRATIONS.latest:
                    return
                with connection.raw.transaction():
                    connection.raw.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                    for number, statements in MIGRATIONS.after(version):
                        for statement in statements:
                            connection.raw.execute(statement)
                        log.info("store.migrated", version=number, backend="postgresql")
                    connection.raw.execute("DELETE FROM schema_version")
                    connection.raw.execute("INSERT INTO schema_version VALUES (%s)", (MIGRATIONS.latest,))
            finally:
                connection.raw.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def probe(url: str, password_file: Path | None) -> str:
    """ "PostgreSQL 15.18 at postgresql://...", or SchemaError with the server's reason."""
    info = connection_info(url, password_file)
    try:
        with psycopg.connect(**info, connect_timeout=10) as connection:
            version = connection.info.server_version
            schema = _first(connection.execute("SELECT to_regclass('schema_version')").fetchone())
    except psycopg.Error as exc:
        raise SchemaError(f"daemon.store: cannot connect to {redacted(url)}: {_first_line(exc)}") from None
    state = "has a dropd store" if schema else "has no dropd store yet (the daemon makes it at its first start)"
    return f"PostgreSQL {version // 10000}.{version % 10000} at {redacted(url)}; the database {state}"


def _why_not(conninfo: str, info: dict[str, Any]) -> str:
    """The server's own reason a connection fails (the pool only says it timed out)."""
    try:
        psycopg.connect(conninfo, **info, connect_timeout=10).close()
    except psycopg.Error as exc:
        return _first_line(exc)
    return "no connection within 15 s"


def _first(row: Any) -> Any:
    """The first value of a row, None for no row."""
    return row[0] if row is not None else None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
