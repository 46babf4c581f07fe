"""The SQLite store: migrations, read-only opens, transactions and the writers' turns."""

import sqlite3
import threading

import pytest

from daemon.store.migrations import Migrations
from daemon.store.records import NoStoreYet, SchemaError
from daemon.store.sqlite import SqliteStore


def schema_version(path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT version FROM schema_version").fetchone()[0]


def test_a_new_store_is_migrated_to_the_latest_version_once(tmp_path):
    path = tmp_path / "dropd.db"
    SqliteStore(path)
    assert schema_version(path) == Migrations("sqlite").latest >= 4
    SqliteStore(path)  # a current store is only read
    assert schema_version(path) == Migrations("sqlite").latest


def test_a_store_written_by_a_newer_dropd_is_refused(tmp_path):
    path = tmp_path / "dropd.db"
    SqliteStore(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(SchemaError, match="schema version 999 is newer than this dropd knows"):
        SqliteStore(path)
    with pytest.raises(SchemaError, match="newer"):
        SqliteStore(path, read_only=True)


def test_read_only_opens_neither_create_nor_migrate(tmp_path):
    path = tmp_path / "dropd.db"
    with pytest.raises(NoStoreYet, match="no store here yet"):
        SqliteStore(path, read_only=True)
    assert not path.exists()
    SqliteStore(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE schema_version SET version = 1")
    with pytest.raises(SchemaError, match="start the daemon once"):
        SqliteStore(path, read_only=True)
    assert schema_version(path) == 1


def test_a_read_only_store_cannot_write(tmp_path):
    SqliteStore(tmp_path / "dropd.db")
    reader = SqliteStore(tmp_path / "dropd.db", read_only=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"), reader.transaction() as tx:
        tx.runs.start("p", "f", "contacts", "test", None, None)


def test_a_transaction_commits_everything_or_nothing(tmp_path):
    store = SqliteStore(tmp_path / "dropd.db")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        run_id = tx.runs.start("p", "f", "contacts", "test", "a.csv", "00")
        tx.ledger.record("f", "00", "a.csv", run_id)
        raise RuntimeError("the import failed")
    with store.reading() as tx:
        assert tx.runs.recent() == [] and tx.ledger.imported_by("f", "00") is None
    with store.transaction(commit=False) as tx:  # a dry run
        tx.runs.start("p", "f", "contacts", "test", "a.csv", "00")
    with store.reading() as tx:
        assert tx.runs.recent() == []


def test_a_writer_waits_its_turn_while_readers_never_wait(tmp_path):
    store = SqliteStore(tmp_path / "dropd.db")
    holding, release, second_done = threading.Event(), threading.Event(), threading.Event()

    def first():
        with store.transaction(label="big") as tx:
            tx.runs.start("p", "big", "contacts", "test", None, None)
            holding.set()
            release.wait(10)

    def second():
        with store.transaction(label="small") as tx:
            tx.runs.start("p", "small", "contacts", "test", None, None)
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert holding.wait(10)
    threads[1].start()
    for _ in range(200):
        if "small" in store.waiting()["waiting"]:
            break
        threading.Event().wait(0.02)
    assert store.waiting()["writing"] == "big" and "small" in store.waiting()["waiting"]
    with store.reading() as tx:
        assert tx.runs.recent() == []  # the open transaction is not visible, and reading did not wait
    assert not second_done.is_set()
    release.set()
    for thread in threads:
        thread.join(10)
    with store.reading() as tx:
        assert sorted(run.feed for run in tx.runs.recent()) == ["big", "small"]


def test_interrupted_runs_are_failed_and_listed(tmp_path):
    store = SqliteStore(tmp_path / "dropd.db")
    with store.transaction() as tx:
        first = tx.runs.start("p", "a", "contacts", "arrival", "x.csv", None)
        done = tx.runs.start("p", "b", "contacts", "arrival", "y.csv", None)
        tx.runs.finish(done, "success")
    with store.transaction() as tx:
        assert tx.runs.fail_interrupted() == [(first, "a")]
    with store.reading() as tx:
        run = tx.runs.get(first)
    assert run.status == "failed" and run.reason.startswith("interrupted") and run.finished


def test_rows_appended_in_the_background_are_read_back_and_fail_their_transaction(tmp_path):
    """`insert_rows` finishes in a thread: the next statement sees its rows, and a failure there
    (here a NOT NULL column) fails the transaction, which then leaves nothing behind."""
    store = SqliteStore(tmp_path / "dropd.db")
    with store.transaction() as tx:
        writes = tx.events.writes()
        writes.add_all("p", ["ev1", "ev2"], ["c1", "c2"], ["open", None], ["t1", "t2"], ["{}", "{}"])
        writes.flush()
        assert tx.events.stored("p", ["ev1", "ev2", "ev3"]) == {"ev1", "ev2"}
    with pytest.raises(sqlite3.IntegrityError, match="events.time"), store.transaction() as tx:
        writes = tx.events.writes()
        writes.add_all("p", ["ev3"], ["c3"], [None], ["t3"], ["{}"])
        writes.add_all("p", ["ev4"], ["c4"], [None], [None], ["{}"])  # no time
        writes.flush()
    with store.reading() as tx:
        assert [event["event_id"] for event in tx.events.listing("p")] == ["ev1", "ev2"]
    with store.transaction() as tx:  # the connection is usable again
        writes = tx.events.writes()
        writes.add_all("p", ["ev5"], ["c5"], [None], ["t5"], ["{}"])
        writes.flush()
    with store.reading() as tx:
        assert [event["event_id"] for event in tx.events.listing("p")] == ["ev1", "ev2", "ev5"]
