"""PostgreSQL going away under the running daemon (`pg_ctl stop -m fast`, and `-m immediate`
during an import): partners still log in and upload, nothing is moved aside, and once the
server is back every file is imported exactly once, in order."""

import json
import time

import pytest

from tests.helpers import (
    CONTACTS_HEADER,
    MESSAGES_HEADER,
    PostgresServer,
    conversations_feed,
    messages_feed,
    students_feed,
)


@pytest.fixture
def own_postgresql():
    server = PostgresServer()
    yield server
    server.stop()


def contacts(first: int, count: int) -> bytes:
    rows = "".join(
        f"S{n},First{n},Last{n},+1202{234 + n // 10000}{n % 10000:04d}\n" for n in range(first, first + count)
    )
    return (CONTACTS_HEADER.split(",Email")[0] + "\n" + rows).encode()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_files_uploaded_while_postgresql_is_down_are_imported_once_it_is_back(dropd, own_postgresql, mode):
    dropd.settings["daemon"].update(store=own_postgresql.database(),
                                    store_password_file=str(own_postgresql.password_file))  # fmt: skip
    dropd.add_feed_partner("northfield", [students_feed(files="all", columns={
        "contact_id": "Student ID", "first_name": "First Name", "last_name": "Last Name", "mobile_number": "Cell"})])  # fmt: skip
    dropd.start()
    if mode == "immediate":  # killed under an import: its transaction is lost, its file stays
        dropd.upload("northfield", "/imports/StudentData_0.csv", contacts(0, 20_000))
        dropd.wait_for("run.started", feed="students")
    own_postgresql.pause(mode)
    for number in (1, 2, 3):
        dropd.upload("northfield", f"/imports/StudentData_{number}.csv", contacts(number * 100_000, 5))
        time.sleep(0.2)
    dropd.wait_for("run.store_unavailable", feed="students", timeout=60)
    assert len(dropd.find("bans.store_unavailable")) <= 2, "logins stop asking the store for a while after it fails"
    answer = dropd.cli("status", check=False)
    assert answer.returncode == 2 and "STORE UNREACHABLE since " in answer.stdout, answer.stdout + answer.stderr
    landing = dropd.home("northfield") / "imports"
    waiting = sorted(path.name for path in landing.glob("StudentData_*"))
    assert waiting == [f"StudentData_{n}.csv" for n in ((0, 1, 2, 3) if mode == "immediate" else (1, 2, 3))]
    own_postgresql.resume()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = json.loads(dropd.cli("runs", "--json", check=False).stdout or "[]")
        if len([run for run in runs if run["status"] == "success"]) >= len(waiting):
            break
        time.sleep(1)
    imported = [run for run in reversed(runs) if run["status"] == "success"]
    assert [run["file"] for run in imported][-3:] == ["StudentData_1.csv", "StudentData_2.csv", "StudentData_3.csv"]
    assert len({run["file"] for run in imported}) == len(imported) == len(waiting), "each once"
    assert not (landing / "failed").exists() or not list((landing / "failed").iterdir()), "nothing set aside"
    assert not [run for run in runs if run["status"] == "running"], "no run left running after the outage"
    for run in runs:
        if run["status"] == "failed":
            assert run["reason"].startswith(("interrupted", "store-unreachable")), run["reason"]


def test_an_export_asked_for_while_postgresql_is_down_delivers_once_it_is_back(dropd, own_postgresql):
    """The export cannot start its run: it is asked again with the imports' backoff, and once
    the server is back delivers one file; no run is left `running`, none failed otherwise."""
    dropd.settings["daemon"].update(store=own_postgresql.database(),
                                    store_password_file=str(own_postgresql.password_file))  # fmt: skip
    dropd.add_feed_partner("northfield", [students_feed(), messages_feed(), conversations_feed(schedule=[])])
    dropd.start()
    dropd.upload(
        "northfield", "/imports/StudentData_1.csv", f"{CONTACTS_HEADER}\nS1,Ada,Lovelace,202-555-0143,,,,\n".encode()
    )
    dropd.wait_for_runs("students")
    rows = "".join(f"S1,web,2026-11-20T10:00:{n:02d}Z,hello {n},,,,,,,,m{n}\n" for n in range(3))
    dropd.upload("northfield", "/log/messages_1.csv", (MESSAGES_HEADER + "\n" + rows).encode())
    dropd.wait_for_runs("log")
    own_postgresql.pause("fast")
    asked = dropd.cli("run-now", "conversations", check=False)
    assert asked.returncode != 0
    dropd.wait_for("run.store_unavailable", feed="conversations", timeout=60)
    outbox = dropd.home("northfield") / "outbox"
    assert not list(outbox.glob("conversations_*")), "nothing delivered while the store is away"
    own_postgresql.resume()
    finished = dropd.wait_for("run.finished", feed="conversations", status="success", timeout=120)
    assert len(finished) == 1
    time.sleep(1)
    assert len(list(outbox.glob("conversations_*.csv"))) == 1
    runs = json.loads(dropd.cli("runs", "--json", "--feed", "conversations").stdout)
    assert [run["status"] for run in runs].count("success") == 1
    assert not [run for run in runs if run["status"] == "running"]
    assert all(run["reason"].startswith("store-unreachable") for run in runs if run["status"] == "failed")
    assert not dropd.find("run.crashed")
