"""The PostgreSQL store against a real server: check-config's report, the password kept out of
the URL, migrations taken once by instances starting together, and the daemon on it."""

import json
import threading

import pytest

from daemon.store.migrations import Migrations
from daemon.store.postgres import PostgresStore
from daemon.store.records import NoStoreYet
from tests.helpers import CONTACTS_HEADER, students_feed


def test_check_config_connects_and_reports_the_server(dropd, postgresql, tmp_path):
    dropd.settings["daemon"]["store"] = postgresql.database()
    dropd.settings["daemon"]["store_password_file"] = str(postgresql.password_file)
    dropd.write_config()
    result = dropd.cli("check-config")
    assert "store: PostgreSQL " in result.stdout and "has no dropd store yet" in result.stdout
    assert postgresql.password not in result.stdout + result.stderr
    (tmp_path / "wrong").write_text("not it\n")
    dropd.settings["daemon"]["store_password_file"] = str(tmp_path / "wrong")
    dropd.write_config()
    refused = dropd.cli("check-config", check=False)
    assert refused.returncode == 1 and "daemon.store: cannot connect to postgresql://dropd@127.0.0.1:" in refused.stderr
    assert "password authentication failed" in refused.stderr


def test_a_password_in_the_url_is_a_config_error(dropd):
    dropd.settings["daemon"]["store"] = "postgresql://dropd:secret@127.0.0.1:5432/dropd"
    dropd.write_config()
    result = dropd.cli("check-config", check=False)
    assert result.returncode == 1 and "daemon.store: the URL holds a password" in result.stderr
    assert "secret" not in result.stderr


def test_instances_starting_together_migrate_once(postgresql):
    url = postgresql.database()
    with pytest.raises(NoStoreYet):
        PostgresStore(url, postgresql.password_file, read_only=True)
    stores, failures = [], []

    def open_one():
        try:
            stores.append(PostgresStore(url, postgresql.password_file))
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and len(stores) == 4
    assert postgresql.sql("SELECT version FROM schema_version", url.rsplit("/", 1)[1]).strip() == str(
        Migrations("postgres").latest
    )
    reader = PostgresStore(url, postgresql.password_file, read_only=True)
    for store in (*stores, reader):
        store.close()


def test_the_daemon_imports_into_postgresql(dropd, postgresql):
    dropd.settings["daemon"]["store"] = postgresql.database()
    dropd.settings["daemon"]["store_password_file"] = str(postgresql.password_file)
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    dropd.upload(
        "northfield", "/imports/StudentData_1.csv", f"{CONTACTS_HEADER}\n1,Ada,Lovelace,202-555-0143,,,,\n".encode()
    )
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success" and dropd.contacts("northfield")["1"]["mobile_number"] == "+12025550143"
    assert "store: PostgreSQL" in dropd.cli("check-config").stdout


def test_lookups_are_planned_for_their_values_as_a_table_grows_in_a_transaction(postgresql):
    """psycopg prepares a statement run five times; the generic plan PostgreSQL then keeps was
    made while the import's table was small and scans it whole ever after (a first import of
    100,000 contacts took minutes). Every lookup must be planned for its own values."""
    store = PostgresStore(postgresql.database(), postgresql.password_file)
    try:
        with store.transaction() as tx:
            writes = tx.contacts.writes()
            for batch in range(12):
                numbers = range(batch * 300, (batch + 1) * 300)
                columns = {
                    "contact_id": [f"S{n}" for n in numbers],
                    "mobile_number": [f"+1202555{n:04d}" for n in numbers],
                }
                columns |= {name: [None] * 300 for name in ("source_hash", "first_name", "last_name", "crm_id", "email",
                                                             "staff_id")}  # fmt: skip
                writes.create_all("p", columns | {"opted_out": [False] * 300}, [()] * 300)
                assert len(tx.contacts.find("p", "contact_id", [f"S{n}" for n in numbers])) == 300
            plans = tx.contacts._all(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%contact_id = wanted.value%'"
            )
        assert plans and all(generic == 0 and custom > 0 for generic, custom in plans)
    finally:
        store.close()


def test_the_placeholder_translation_cache_is_bounded():
    from daemon.store.postgres import _Connection

    for n in range(3000):
        assert _Connection._sql(f"SELECT ? FROM t{n} WHERE x LIKE '%a'") == f"SELECT %s FROM t{n} WHERE x LIKE '%%a'"
    assert _Connection._sql.cache_info().currsize <= 1024


def test_many_rows_go_through_copy_keep_their_order_and_conflicts(postgresql):
    """Batches of COPY_FROM rows or more are copied into a staging table and inserted from it:
    the keys come back for the right rows, and a duplicate event keeps the first one stored."""
    from daemon.store.postgres import COPY_FROM

    store = PostgresStore(postgresql.database(), postgresql.password_file)
    count = COPY_FROM + 50
    try:
        with store.transaction() as tx:
            writes = tx.contacts.writes()
            columns = {"contact_id": [f"S{n}" for n in range(count)], "mobile_number": [None] * count}
            columns |= {name: [None] * count for name in ("source_hash", "first_name", "last_name", "crm_id", "email",
                                                           "staff_id")}  # fmt: skip
            keys = writes.create_all("p", columns | {"opted_out": [False] * count}, [()] * count)
            stored = {
                contact.contact_id: contact.key
                for contact in tx.contacts.find("p", "contact_id", columns["contact_id"])
            }
            assert keys == [stored[f"S{n}"] for n in range(count)]
            events = tx.events.writes()
            ids = [f"E{n % (count - 10)}" for n in range(count)]  # the last ten repeat the first ten
            events.add_all("p", ids, [f"S{n}" for n in range(count)], ["open"] * count,
                           ["2026-11-27T10:00:00Z"] * count, [json.dumps({"n": n}) for n in range(count)])  # fmt: skip
            events.flush()
            events.add_all("p", ids[:COPY_FROM], ["X"] * COPY_FROM, ["click"] * COPY_FROM,
                           ["2026-11-28T10:00:00Z"] * COPY_FROM, ["{}"] * COPY_FROM)  # fmt: skip
            events.flush()
            rows = tx.events._all(
                "SELECT event_id, contact_id, action FROM events WHERE partner = 'p' ORDER BY event_id"
            )
        assert len(rows) == count - 10
        assert all(contact.startswith("S") and action == "open" for _, contact, action in rows), "first stored wins"
        assert {event: contact for event, contact, _ in rows}["E0"] == "S0"
    finally:
        store.close()


def _new_contacts(count: int, prefix: str = "S") -> dict:
    columns = {"contact_id": [f"{prefix}{n}" for n in range(count)], "mobile_number": [None] * count}
    columns |= {name: [None] * count for name in ("source_hash", "first_name", "last_name", "crm_id", "email",
                                                   "staff_id")}  # fmt: skip
    return columns | {"opted_out": [False] * count}


def test_a_batch_written_in_the_background_meets_a_taken_key_at_settle(postgresql):
    """A batch of COPY_FROM or more is written in the background: a contact ID stored already
    turns the whole batch down at `settle` (nothing of it written), and the transaction goes on."""
    from daemon.store.postgres import COPY_FROM
    from daemon.store.records import KeyTaken

    store = PostgresStore(postgresql.database(), postgresql.password_file)
    count = COPY_FROM + 50
    try:
        with store.transaction() as tx:
            tx.contacts.writes().create_all("p", _new_contacts(1, prefix="T"), [()])
            tx.contacts.writes().settle()
            writes = tx.contacts.writes()
            columns = _new_contacts(count, prefix="S")
            columns["contact_id"][-1] = "T0"  # stored above
            writes.create_all("p", columns, [()] * count)
            with pytest.raises(KeyTaken, match="contacts_by_contact_id"):
                writes.settle()
            assert tx.contacts.find("p", "contact_id", [f"S{n}" for n in range(count)]) == []
            keys = writes.create_all("p", _new_contacts(count, prefix="U"), [()] * count)
            writes.settle()
        with store.reading() as tx:
            stored = {c.contact_id: c.key for c in tx.contacts.find("p", "contact_id", [f"U{n}" for n in range(count)])}
            assert [stored[f"U{n}"] for n in range(count)] == keys
            assert len(tx.contacts.find("p", "contact_id", ["T0"])) == 1
    finally:
        store.close()


def test_keys_drawn_out_of_one_run_are_let_go_and_the_rows_still_get_theirs(postgresql):
    """Keys for a batch are drawn from the sequence first; when they are not one run (here: a
    sequence that steps by two, as another session drawing meanwhile would leave them), the
    batch is written with keys the sequence gives it, and each row gets its own."""
    from daemon.store.postgres import COPY_FROM

    store = PostgresStore(postgresql.database(), postgresql.password_file)
    count = COPY_FROM + 5
    try:
        with store.transaction() as tx:
            tx.contacts._db.raw.execute("ALTER SEQUENCE contacts_id_seq INCREMENT BY 2")
            keys = tx.contacts.writes().create_all("p", _new_contacts(count), [()] * count)
            tx.contacts.writes().settle()
            stored = {c.contact_id: c.key for c in tx.contacts.find("p", "contact_id", [f"S{n}" for n in range(count)])}
        assert [stored[f"S{n}"] for n in range(count)] == keys
        assert len(set(keys)) == count
    finally:
        store.close()


def test_a_background_insert_that_fails_fails_its_transaction(postgresql):
    """Any other error of a batch written in the background is raised where the connection is
    next used, and the transaction rolls back: nothing of it is stored."""
    import psycopg

    from daemon.store.postgres import COPY_FROM

    store = PostgresStore(postgresql.database(), postgresql.password_file)
    count = COPY_FROM
    try:
        with pytest.raises(psycopg.errors.NotNullViolation), store.transaction() as tx:
            columns = _new_contacts(count)
            columns["contact_id"][7] = None
            tx.contacts.writes().create_all("p", columns, [()] * count)
            tx.contacts.version("p")
        with store.reading() as tx:
            assert tx.contacts.find("p", "contact_id", [f"S{n}" for n in range(count)]) == []
    finally:
        store.close()


@pytest.mark.parametrize("entries", [0, 1, 3000])
def test_digest_sets_are_written_and_read_a_chunk_at_a_time(postgresql, monkeypatch, entries):
    """A feed's digest set goes to and from its bytea columns in chunks (whole, a 16 MiB set
    took 54 MiB to read); chunks of 1,000 bytes here, so that every path is taken."""
    import numpy as np

    from daemon.store import postgres
    from daemon.store.row_digests import DIGEST, DigestSet

    monkeypatch.setattr(postgres, "BLOB_CHUNK", 1000)
    rng = np.random.default_rng(entries)
    digests = np.sort(rng.integers(0, 2**63, entries, dtype=np.uint64)).astype(DIGEST)
    keys = rng.integers(1, 10**9, entries, dtype=np.int64)
    store = PostgresStore(postgresql.database(), postgresql.password_file)
    try:
        with store.transaction() as tx:
            tx.row_digests.save("students", "p", 7, DigestSet(digests, keys))
        with store.transaction() as tx:
            back = tx.row_digests.previous("students", "p", 7)
            assert tx.row_digests.previous("students", "p", 8) is None, "another version: no set"
        assert back is not None and len(back) == entries
        assert bytes(back.to_bytes()[0]) == digests.tobytes() and bytes(back.to_bytes()[1]) == keys.tobytes()
    finally:
        store.close()
