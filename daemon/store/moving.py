"""`dropd migrate-store`: every table of one store copied into another, then verified.

SQLite to PostgreSQL (or back, `sqlite:PATH`). The target is brought to this dropd's schema
first (its own migrations), must be empty unless `force` (then it is emptied), and is
filled table by table in an order that satisfies its foreign keys: PostgreSQL by COPY,
SQLite by batched INSERTs, each table in one transaction, store keys (`id`) kept as they
are (PostgreSQL's identity sequences are moved past them). Each table is then verified: the
same row count and the same SHA-256 over its rows read in key order from both sides.
The daemon must be stopped meanwhile (the source is read as it is).
"""

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SKIPPED = {"schema_version", "sqlite_sequence"}
"""Bookkeeping each backend keeps for itself."""
FIRST = ("runs", "contacts")
"""Tables other tables refer to (run_errors, imported_files, outbox -> runs; messages -> contacts)."""
BATCH = 5000


class MoveRefused(Exception):
    """The move cannot be made; the message says why and what to do."""


@dataclass
class TableMoved:
    table: str
    rows: int
    digest: str


class _Side(Protocol):
    """One store, read or written through its driver directly."""

    def tables(self) -> list[str]: ...
    def columns(self, table: str) -> list[str]: ...
    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]: ...
    def count(self, table: str) -> int: ...
    def empty(self, tables: list[str]) -> None: ...
    def fill(
        self, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]], progress: Callable[[int], None]
    ) -> None: ...
    def close(self) -> None: ...


class _Sqlite:
    def __init__(self, path: Path, create: bool):
        if create:
            from daemon.store.sqlite import SqliteStore

            SqliteStore(path).close()  # made and migrated to this dropd's schema
        elif not path.is_file():
            raise MoveRefused(f"{path}: no store there")
        self.db = sqlite3.connect(path, isolation_level=None)

    def tables(self) -> list[str]:
        rows = self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        return [name for (name,) in rows if name not in SKIPPED and not name.startswith("sqlite_")]

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.db.execute(f"PRAGMA table_info({table})")]

    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        cursor = self.db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {_order(columns)}")
        while batch := cursor.fetchmany(BATCH):
            yield from batch

    def count(self, table: str) -> int:
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def empty(self, tables: list[str]) -> None:
        self.db.execute("BEGIN")
        for table in reversed(_ordered(tables)):
            self.db.execute(f"DELETE FROM {table}")
        self.db.execute("COMMIT")

    def fill(
        self, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]], progress: Callable[[int], None]
    ) -> None:
        marks = ", ".join("?" * len(columns))
        self.db.execute("BEGIN")
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(tuple(bytes(value) if isinstance(value, memoryview) else value for value in row))
            if len(batch) >= BATCH:
                self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", batch)
                progress(len(batch))
                batch = []
        if batch:
            self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", batch)
            progress(len(batch))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class _Postgres:
    def __init__(self, url: str, password_file: Path | None, create: bool):
        import psycopg

        from daemon.store.postgres import PostgresStore, connection_info

        if create:
            PostgresStore(url, password_file).close()  # migrated to this dropd's schema
        info = connection_info(url, password_file)
        self.db = psycopg.connect(info.pop("conninfo"), autocommit=True, **info)

    def tables(self) -> list[str]:
        rows = self.db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
        return [name for (name,) in rows if name not in SKIPPED]

    def columns(self, table: str) -> list[str]:
        rows = self.db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        return [name for (name,) in rows]

    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        with self.db.cursor(name=f"move_{table}") as cursor, self.db.transaction():
            cursor.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {_order(columns)}")
            while batch := cursor.fetchmany(BATCH):
                yield from batch

    def count(self, table: str) -> int:
        row = self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def empty(self, tables: list[str]) -> None:
        self.db.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")

    def fill(
        self, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]], progress: Callable[[int], None]
    ) -> None:
        with self.db.transaction(), self.db.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                done = 0
                for row in rows:
                    copy.write_row(row)
                    done += 1
                    if done % BATCH == 0:
                        progress(BATCH)
                progress(done % BATCH)
            if "id" in columns:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST(MAX(id), 1), MAX(id) IS NOT NULL) "
                    f"FROM {table}"
                )

    def close(self) -> None:
        self.db.close()


def _order(columns: list[str]) -> str:
    """Key order: `id` when the table has one, else every column (a deterministic order)."""
    return "id" if "id" in columns else ", ".join(str(n) for n in range(1, len(columns) + 1))


def _ordered(tables: list[str]) -> list[str]:
    return [*[t for t in FIRST if t in tables], *[t for t in tables if t not in FIRST]]


def _digest(rows: Iterator[tuple[Any, ...]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        for value in row:
            if isinstance(value, memoryview):
                value = bytes(value)
            digest.update(value.hex().encode() if isinstance(value, bytes) else repr(value).encode())
            digest.update(b"\x1f")
        digest.update(b"\x1e")
    return digest.hexdigest()


def check_address(target: str) -> None:
    if not target.startswith(("sqlite:", "postgresql://", "postgres://")):
        raise MoveRefused(f"{target!r} is not a store: write postgresql://USER@HOST/DB or sqlite:PATH")


def side_for(target: str, password_file: Path | None, create: bool) -> _Side:
    check_address(target)
    if target.startswith("sqlite:"):
        return _Sqlite(Path(target.removeprefix("sqlite:")).expanduser(), create)
    return _Postgres(target, password_file, create)


def move(source: _Side, target: _Side, force: bool, progress: Callable[[str, int, int], None]) -> list[TableMoved]:
    """Copy every table of `source` into `target`; the tables moved with their row counts and
    digests. MoveRefused when the target holds data (without `force`) or the copy differs."""
    tables = source.tables()
    missing = [table for table in tables if table not in target.tables()]
    if missing:
        raise MoveRefused(f"the target has no table {', '.join(missing)}: it is not a dropd store of this version")
    held = {table: target.count(table) for table in tables}
    if any(held.values()) and not force:
        listed = ", ".join(f"{table} ({count:,} rows)" for table, count in held.items() if count)
        raise MoveRefused(f"the target is not empty: {listed}. Use an empty database, or --force to empty it first")
    if any(held.values()):
        target.empty(tables)
    moved = []
    for table in _ordered(tables):
        columns = [column for column in source.columns(table) if column in target.columns(table)]
        total = source.count(table)
        done = [0]

        def step(rows: int, table: str = table, total: int = total, done: list[int] = done) -> None:
            done[0] += rows
            progress(table, done[0], total)

        progress(table, 0, total)
        target.fill(table, columns, source.rows(table, columns), step)
        ours, theirs = _digest(source.rows(table, columns)), _digest(target.rows(table, columns))
        count = target.count(table)
        if count != total or ours != theirs:
            raise MoveRefused(
                f"{table}: the copy differs from the source ({count:,} rows of {total:,}; SHA-256 "
                f"{theirs[:12]} vs {ours[:12]}). The target is left as it is; run again with --force"
            )
        moved.append(TableMoved(table, total, ours))
    return moved
