"""Any name a client can create ends in a coded outcome and never blocks the next file: names
too long to archive with a stamp, names with line breaks or terminal escapes (real SFTP
uploads into the running daemon, recaps through a real SMTP server)."""

import os
import time

import pytest

from tests.helpers import CONTACTS_HEADER, students_feed

pytestmark = pytest.mark.slow

ROW = "{n},Ada,Lovelace,(202) 555-{n:04d},,,,\n"


def start(dropd, sink=None, **feed):
    dropd.settings["daemon"]["quiet_period"] = "1s"
    if sink is not None:
        dropd.settings["smtp"] = sink.settings()
        feed.setdefault("notify", ["registrar@northfield.example"])
    dropd.add_feed_partner("northfield", [students_feed(**feed)])
    dropd.start()


def upload(dropd, name: str, rows=(1,)) -> None:
    dropd.upload(
        "northfield", f"/imports/{name}", (CONTACTS_HEADER + "\n" + "".join(ROW.format(n=n) for n in rows)).encode()
    )


def names_in(folder) -> list[str]:
    return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.mark.parametrize("files", ["all", "most_recent"])
def test_a_name_too_long_to_archive_with_a_stamp_never_wedges_the_feed(dropd, files):
    """A 250-byte name imported, then its archive rename failed (ENAMETOOLONG) after the commit:
    every later run died on it, or a most_recent feed skipped each new file as superseded."""
    start(dropd, files=files, error_report=True)
    long_name = "StudentData_" + "x" * 234 + ".csv"
    assert len(long_name.encode()) == 250
    upload(dropd, long_name, rows=(1, 2))
    [first] = dropd.wait_for_runs("students")
    assert first["status"] == "success", first
    upload(dropd, "StudentData_next.csv", rows=(3,))
    runs = dropd.wait_for_runs("students", 2)
    assert runs[1]["status"] == "success" and runs[1]["file"] == "StudentData_next.csv", runs
    landing = dropd.home("northfield") / "imports"
    assert [name for name in names_in(landing) if name != "archive"] == []
    archived = names_in(landing / "archive")
    assert len(archived) == 2 and all(len(name.encode()) <= 200 for name in archived), archived
    [shortened] = [name for name in archived if name.startswith("StudentData_xxx")]
    assert shortened.endswith(".csv") and "~" in shortened
    assert set(dropd.contacts("northfield")) == {"1", "2", "3"}


def test_line_breaks_and_escapes_in_a_name_end_in_a_recorded_run_and_a_clean_recap(dropd, sink):
    """A CR/LF in a name raised inside the run's transaction (a recap's subject, "superseded by
    NAME") and left the run `running` for good."""
    start(dropd, sink, files="most_recent", schedule=[], notify_on=["failed", "success", "skipped"])
    hostile = "StudentData_\r\nBcc: victim@example.org\x1b[2J\x1b]0;owned\x07.csv"
    upload(dropd, "StudentData_older.csv")
    time.sleep(1.1)  # a later modification time: the hostile name is the newest file
    upload(dropd, hostile, rows=(2,))
    for name in ("StudentData_older.csv", hostile):
        dropd.wait_for("file.arrived", path=str(dropd.home("northfield") / "imports" / name))
    dropd.cli("run-now", "students")
    skipped, imported = dropd.wait_for_runs("students", 2)
    assert skipped["status"] == "skipped" and skipped["reason"] == f"superseded by {hostile}"
    assert imported["status"] == "success" and imported["file"] == hostile
    messages = sink.wait_for(2)
    escaped = "StudentData_\\r\\nBcc: victim@example.org\\x1b[2J\\x1b]0;owned\\x07.csv"
    for message in messages:
        assert message["Bcc"] is None and message["To"] == "registrar@northfield.example"
        assert "\r" not in message["Subject"] and "\x1b" not in message["Subject"]
    assert any("superseded by StudentData_\\r\\nBcc" in message["Subject"] for message in messages)
    assert any(escaped in message.get_body(("plain",)).get_content() for message in messages)
    listing = dropd.cli("runs").stdout
    assert "\x1b" not in listing and "\r" not in listing and escaped in listing
    upload(dropd, "StudentData_after.csv", rows=(3,))
    dropd.cli("run-now", "students")
    assert dropd.wait_for_runs("students", 3)[2]["status"] == "success"
    assert all(run["status"] != "running" for run in dropd.runs())
