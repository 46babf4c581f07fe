"""The store: contacts, subscriber lists, events, messages, runs, the file ledger and claims.

This package is the only place with SQL. `open_store(config)` returns the backend the
config names; its `transaction()` yields a `Transaction` of typed repositories
(`tx.contacts`, `tx.runs`, `tx.ledger`, ...) that commit together, and `reading()` yields
the same repositories over a consistent snapshot. Read-only opens (the CLI's listings)
never write and never migrate. Backends: `sqlite.py` (the default, `<state_dir>/dropd.db`)
and `postgres.py` (`daemon.store = "postgresql://..."`, shared by several instances); their
contracts, `Store` and the `Connection` the repositories use, are in `backend.py`.
"""

from typing import TYPE_CHECKING

from daemon.store.backend import Store
from daemon.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from daemon.config.settings import Config


def open_store(config: "Config", read_only: bool = False) -> Store:
    """The store `daemon.store` names, migrated to this version unless `read_only`."""
    if config.daemon.store == "sqlite":
        return SqliteStore(config.daemon.state_dir / "dropd.db", read_only=read_only)
    from daemon.store.postgres import PostgresStore  # psycopg is loaded only when it is used

    return PostgresStore(config.daemon.store, config.daemon.store_password_file, read_only=read_only)


def probe_store(config: "Config") -> str:
    """Connect to a PostgreSQL store without changing it: its server version, or SchemaError
    saying exactly why it cannot be reached (`dropd check-config`)."""
    from daemon.store.postgres import probe

    return probe(config.daemon.store, config.daemon.store_password_file)
