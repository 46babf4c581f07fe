"""PostgreSQL going away under the running daemon (`pg_ctl stop -m fast`, and `-m immediate`
during an import): partners still log in and upload, nothing is moved aside, and once the
server is back every file is imported exactly once, in order."""

import json
import time

import pytest

from tests.helpers import CONTACTS_HEADER, PostgresServer, students_feed


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
    assert not [run for run in runs if run["status"] == "failed" and not run["reason"].startswith("interrupted")]
    assert not (landing / "failed").exists() or not list((landing / "failed").iterdir()), "nothing set aside"
