"""Checksum companions and ready markers through the running daemon (contacts over SFTP),
and the checksum an export writes beside its file, checked by `sha256sum -c`."""

import hashlib
import subprocess

from tests.daemon.feeds.test_count_files import folder, upload
from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import students_feed

ROWS = HEADER + "\n1,Ann,One,202-555-0101,,,,\n2,Bob,Two,202-555-0102,,,,\n"
DIGEST = hashlib.sha256(ROWS.encode()).hexdigest()


def start(dropd, **feed):
    dropd.add_feed_partner("northfield", [students_feed(**{"checksum_file": "required", "checksum_wait": "3s",
                                                          **feed})])  # fmt: skip
    dropd.start()


def test_a_right_sha256_lets_the_file_in_and_both_are_archived(dropd):
    start(dropd)
    upload(dropd, "StudentData_1.csv.sha256", f"{DIGEST}  StudentData_1.csv\n")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success" and run["rows_applied"] == 2
    dropd.wait_for("checksum.verified", algorithm="sha256")
    archived = folder(dropd, "archive")
    assert len(archived) == 2 and any(name.endswith(".sha256") for name in archived), archived


def test_a_wrong_checksum_voids_the_run_and_sends_both_to_failed(dropd):
    start(dropd, checksum_file="optional")
    upload(dropd, "StudentData_1.csv.md5", f"{'0' * 32} *StudentData_1.csv\n")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "failed" and run["reason"].startswith(
        "checksum-mismatch: StudentData_1.csv.md5 says md5 000"
    )
    assert hashlib.md5(ROWS.encode()).hexdigest() in run["reason"]
    assert dropd.contacts("northfield") == {}, "nothing applied"
    assert len(folder(dropd, "failed")) == 2 and folder(dropd) == ["archive", "failed"]


def test_a_required_checksum_that_never_comes_fails_the_run(dropd):
    start(dropd, checksum_wait="2s")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students", timeout=20)
    assert run["status"] == "failed"
    assert run["reason"] == (
        "checksum-file-missing: neither StudentData_1.csv.sha256 nor StudentData_1.csv.md5 arrived within checksum_wait"
    )
    assert dropd.contacts("northfield") == {}


def test_a_data_file_waits_for_its_late_checksum_and_an_md5_counts_too(dropd):
    start(dropd, checksum_wait="1m")
    upload(dropd, "StudentData_1.csv", ROWS)
    dropd.wait_for("run.waiting_for_checksum_file", file="StudentData_1.csv")
    assert dropd.runs() == []
    upload(dropd, "StudentData_1.csv.md5", hashlib.md5(ROWS.encode()).hexdigest() + "\n")
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success"
    dropd.wait_for("checksum.verified", algorithm="md5")


def test_an_optional_checksum_that_comes_after_the_import_is_checked_against_that_run(dropd):
    start(dropd, checksum_file="optional")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students")
    upload(dropd, "StudentData_1.csv.sha256", f"{'f' * 64}  StudentData_1.csv\n")
    late = dropd.wait_for_runs("students", count=2)[-1]
    assert late["status"] == "failed" and late["reason"].startswith(
        f"checksum-mismatch: StudentData_1.csv.sha256 came after run #{run['id']} imported StudentData_1.csv"
    )
    assert late["reason"].endswith("the data stays applied") and len(dropd.contacts("northfield")) == 2


def test_a_ready_marker_holds_the_file_until_it_comes(dropd):
    start(dropd, checksum_file="off", ready_marker="NAME.done")
    upload(dropd, "StudentData_1.csv", ROWS)
    dropd.wait_for("run.waiting_for_marker", file="StudentData_1.csv", marker="StudentData_1.csv.done")
    assert dropd.runs() == []
    upload(dropd, "StudentData_1.csv.done", "")
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success" and run["file"] == "StudentData_1.csv"
    assert len(folder(dropd, "archive")) == 2


def test_an_export_writes_a_sha256_file_that_sha256sum_accepts(tmp_path, password_hash):
    from tests.daemon.exports.test_exports import log_messages, message
    from tests.daemon.exports.test_exports import start as start_exports
    from tests.helpers import InProcessFeeds, conversations_feed

    feeds = InProcessFeeds(tmp_path, password_hash)
    start_exports(feeds, conversations_feed(checksum_file="write"))
    try:
        log_messages(feeds, "messages_1.csv", message(1))
        first = feeds.export("conversations")
        log_messages(feeds, "messages_2.csv", message(2))
        second = feeds.export("conversations")
        outbox = feeds.home("northfield") / "outbox"
        for run in (first, second):
            assert (outbox / f"{run['file']}.sha256").read_text() == f"{run['sha256']}  {run['file']}\n"
        names = sorted(path.name for path in outbox.iterdir())
        assert len(names) == 4, names
        checked = subprocess.run(["sha256sum", "-c", *[n for n in names if n.endswith(".sha256")]], cwd=outbox,
                                 capture_output=True, text=True)  # fmt: skip
        assert checked.returncode == 0 and checked.stdout.count(": OK") == 2, checked.stdout
    finally:
        feeds.stop()
