"""`dropd migrate-store`: a SQLite store with every kind of data copied into a real, empty
PostgreSQL and verified; a non-empty target refused; the daemon's data usable there after."""

import json
import subprocess
import sys

from tests.daemon.exports.test_exports import log_messages, message
from tests.daemon.exports.test_exports import start as start_exports
from tests.helpers import InProcessFeeds, conversations_feed


def cli(feeds, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args, "-c", str(feeds.config_file)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_sqlite_store_moves_to_postgresql_verified_and_works_there(tmp_path, password_hash, postgresql):
    feeds = InProcessFeeds(tmp_path, password_hash)
    start_exports(feeds, conversations_feed())
    log_messages(feeds, "messages_1.csv", message(1), message(2, direction="outgoing", source="AI"))
    feeds.upload("northfield", "/imports/StudentData_2.csv", b"Student ID,First Name\n1,Ann\n")  # a failed run
    feeds.export("conversations")
    with feeds.store.transaction() as tx:
        tx.claims.claim_window("students", "2026-12-04/overnight")
        tx.web_sessions.open("a" * 64, "maria", "csrf", "credential", "2999-01-01T00:00:00+00:00")
    before = feeds.runs()
    feeds.stop()
    url = postgresql.database()

    moved = cli(feeds, "migrate-store", "--to", url, "--password-file", str(postgresql.password_file))
    assert moved.returncode == 0, moved.stderr
    lines = {line.split()[0]: line for line in moved.stdout.splitlines() if line.endswith("verified")}
    for table in ("contacts", "runs", "run_errors", "messages", "imported_files", "window_claims", "web_sessions"):
        assert table in lines, moved.stdout
    assert f'store = "{url}"' in moved.stdout and "contacts: 1 of 1 rows" in moved.stderr

    again = cli(feeds, "migrate-store", "--to", url, "--password-file", str(postgresql.password_file))
    assert again.returncode == 1 and "the target is not empty: " in again.stderr and "--force" in again.stderr
    forced = cli(feeds, "migrate-store", "--to", url, "--password-file", str(postgresql.password_file), "--force")
    assert forced.returncode == 0, forced.stderr

    feeds.settings["daemon"]["store"] = url
    feeds.settings["daemon"]["store_password_file"] = str(postgresql.password_file)
    feeds.start()
    try:
        assert feeds.runs() == before, "every run, with its id, is there"
        listed = cli(feeds, "contacts", "--partner", "northfield", "--json")
        assert [contact["contact_id"] for contact in json.loads(listed.stdout)] == ["S1"], listed.stderr
        feeds.upload("northfield", "/imports/StudentData_3.csv",
                     b"Student ID,First Name,Last Name,Cell\nS2,Bo,Ek,202-555-0144\n")  # fmt: skip
        newest = feeds.runs()[0]
        assert newest["status"] == "success" and newest["id"] == before[0]["id"] + 1, "new keys follow the moved ones"
    finally:
        feeds.stop()

    back = tmp_path / "back.db"
    returned = cli(feeds, "migrate-store", "--to", f"sqlite:{back}")
    assert returned.returncode == 0, returned.stderr
    assert "runs" in returned.stdout and back.is_file()


def test_a_target_that_is_no_store_is_named(tmp_path, password_hash):
    feeds = InProcessFeeds(tmp_path, password_hash)
    feeds.write_config()
    result = cli(feeds, "migrate-store", "--to", "mysql://db/dropd")
    assert result.returncode == 1 and "is not a store: write postgresql://USER@HOST/DB or sqlite:PATH" in result.stderr
