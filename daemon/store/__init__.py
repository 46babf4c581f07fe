"""The store: contacts, subscriber lists, events, messages, runs, the file ledger and claims.

This package is the only place with SQL. `open_store(config)` returns the backend the
config names; its `transaction()` yields a `Transaction` of typed repositories
(`tx.contacts`, `tx.runs`, `tx.ledger`, ...) that commit together, and `reading()` yields
the same repositories over a consistent snapshot. Read-only opens (the CLI's listings)
never write and never migrate. Backends: `sqlite.py` (the default, `<state_dir>/dropd.db`).
"""

from daemon.store.records import SchemaError
from daemon.store.sqlite import SqliteStore


def open_store(config, read_only: bool = False) -> SqliteStore:
    """The store `daemon.store` names, migrated to this version unless `read_only`."""
    if config.daemon.store != "sqlite":
        raise SchemaError(
            f'{config.file}: daemon.store: PostgreSQL stores are not supported by this version; use "sqlite"'
        )
    return SqliteStore(config.daemon.state_dir / "dropd.db", read_only=read_only)
