"""The contracts of the store: what a backend's connection does for the repositories, and what
the rest of the daemon may ask of a store. `sqlite.py` and `postgres.py` each implement both;
nothing outside `daemon/store` knows which one it has.
"""

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """One backend connection, as the repositories use it (`?` placeholders)."""

    arrays: bool
    """True when a parameter may be a list, matched with `column = ANY(?)` (PostgreSQL)."""
    checks_keys_later: bool
    """True when the store's own unique keys check the rows of `insert_keyed` (a taken one
    raises `KeyTaken` at `settle`, having written none of them), so callers need not look the
    keys up first: both backends (SQLite may also finish the insert in the background)."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...

    def stream(self, sql: str, params: Sequence[Any] = (), /) -> Iterator[Any]:
        """Rows one at a time, never all held at once."""
        ...

    def insert_rows(
        self, table: str, columns: tuple[str, ...], conflict: str, rows: list[Any], fixed: tuple[Any, ...] = ()
    ) -> None: ...

    def insert_keyed(
        self, table: str, columns: tuple[str, ...], rows: list[Any], fixed: dict[str, Any]
    ) -> list[int]: ...

    def put_blobs(self, table: str, key_column: str, key: Any, blobs: dict[str, memoryview]) -> None: ...

    def get_blobs(
        self, table: str, key_column: str, key: Any, columns: tuple[str, ...]
    ) -> dict[str, bytes | bytearray] | None:
        """The blob columns of one row (None: no such row), each read into memory once."""
        ...

    def settle(self) -> None:
        """Wait for what the connection still writes in the background (nothing: return)."""
        ...

    def lock_for_transaction(self, name: str) -> None:
        """A lock on `name` until the transaction ends (a backend with one writer has no need)."""
        ...


class Store(Protocol):
    """What the daemon, the commands and the feed kinds may ask of a store."""

    def transaction(self, label: str = "daemon", commit: bool = True) -> AbstractContextManager["Transaction"]: ...

    def reading(self) -> AbstractContextManager["Transaction"]: ...

    def waiting(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
