"""Companion count files through the running daemon (contacts feeds over SFTP)."""

import os
import time

from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import students_feed

ROWS = HEADER + "\n1,Ann,One,202-555-0101,,,,\n2,Bob,Two,202-555-0102,,,,\n"


def start(dropd, mode="required", wait="3s"):
    dropd.add_feed_partner("northfield", [students_feed(count_file=mode, count_wait=wait)])
    dropd.start()


def upload(dropd, name, content):
    dropd.upload("northfield", f"/imports/{name}", content.encode())


def folder(dropd, *parts):
    """The files in a folder of the landing area, without the partner's error reports."""
    path = dropd.home("northfield").joinpath("imports", *parts)
    return sorted(name for name in os.listdir(path) if not name.endswith(".errors.csv")) if path.is_dir() else []


def test_count_file_before_data_is_used(dropd):
    start(dropd)
    upload(dropd, "StudentData_1_count.txt", "2\n")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success" and run["rows_applied"] == 2
    assert [name.split("_")[2] if "count" in name else "csv" for name in folder(dropd, "archive")] == ["csv", "count"]


def test_data_waits_for_a_count_file_that_comes_later(dropd):
    start(dropd)
    upload(dropd, "StudentData_1.csv", ROWS)
    dropd.wait_for("run.waiting_for_count_file", file="StudentData_1.csv")
    assert dropd.runs() == []
    upload(dropd, "StudentData_1_count.txt", " 2 ")
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success"


def test_required_count_file_that_never_comes_fails_the_run(dropd):
    start(dropd, wait="2s")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students", timeout=20)
    assert run["status"] == "failed"
    assert run["reason"] == "count-file-missing: no StudentData_1_count.txt arrived within count_wait"
    assert dropd.contacts("northfield") == {}
    assert [name.startswith("StudentData_1_") for name in folder(dropd, "failed")] == [True]


def test_count_mismatch_voids_the_run_and_keeps_the_previous_import(dropd):
    start(dropd, mode="optional")
    upload(dropd, "StudentData_1.csv", HEADER + "\n9,Old,Row,202-555-0109,,,,\n")
    dropd.wait_for_runs("students")
    upload(dropd, "StudentData_2_count.txt", "3")
    upload(dropd, "StudentData_2.csv", ROWS)
    run = dropd.wait_for_runs("students", 2)[-1]
    assert run["status"] == "failed" and run["reason"] == "count-mismatch: the count file said 3 rows, the file has 2"
    assert set(dropd.contacts("northfield")) == {"9"}
    failed = folder(dropd, "failed")
    assert len(failed) == 2 and any("count" in name for name in failed)
    assert folder(dropd) == ["archive", "failed"]


def test_invalid_count_file_fails_the_run(dropd):
    start(dropd)
    upload(dropd, "StudentData_1_count.txt", "two rows")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "failed"
    assert (
        run["reason"]
        == "count-file-invalid: StudentData_1_count.txt must hold one whole number of data rows, not 'two rows'"
    )
    assert len(folder(dropd, "failed")) == 2 and dropd.contacts("northfield") == {}


def test_off_ignores_a_stray_count_file(dropd):
    start(dropd, mode="off")
    upload(dropd, "StudentData_1_count.txt", "999")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success" and run["file"] == "StudentData_1.csv"
    time.sleep(0.5)  # a run for the unmatched count file would show by now
    assert folder(dropd) == ["StudentData_1_count.txt", "archive"]
    assert len(dropd.runs()) == 1


def test_optional_without_count_file_imports(dropd):
    start(dropd, mode="optional")
    upload(dropd, "StudentData_1.csv", ROWS)
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success"


def test_count_file_whose_data_never_comes_fails_after_count_wait(dropd):
    start(dropd, wait="2s")
    upload(dropd, "StudentData_7_count.txt", "2")
    [run] = dropd.wait_for_runs("students", timeout=20)
    assert run["status"] == "failed" and run["reason"].startswith("data-file-missing: StudentData_7_count.txt arrived")
    assert [name.startswith("StudentData_7_count_") for name in folder(dropd, "failed")] == [True]


def test_an_optional_count_file_that_comes_after_its_import_is_checked_against_it(dropd):
    """Seed 003 lets the count file come later; it failed the next run as data-file-missing
    although its data file had been imported."""
    start(dropd, mode="optional", wait="1s")
    upload(dropd, "StudentData_1.csv", ROWS)
    [first] = dropd.wait_for_runs("students")
    assert first["status"] == "success"
    upload(dropd, "StudentData_1_count.txt", "2\n")
    dropd.wait_for("count_file.late", matches=True, file="StudentData_1_count.txt")
    [noted] = dropd.runs("--feed", "students")
    assert noted["id"] == first["id"] and noted["details"]["late_count"] == 2, "noted on that run, no new run"
    assert "StudentData_1_count.txt" not in folder(dropd)

    upload(dropd, "StudentData_2.csv", ROWS.replace("Ann", "Anne"))
    second = dropd.wait_for_runs("students", 2)[-1]
    upload(dropd, "StudentData_2_count.txt", "5\n")
    mismatch = dropd.wait_for_runs("students", 3)[-1]
    assert mismatch["status"] == "failed" and mismatch["file"] == "StudentData_2_count.txt"
    assert mismatch["reason"] == (
        f"count-mismatch: StudentData_2_count.txt came after run #{second['id']} imported StudentData_2.csv: it says "
        "5 rows, the file had 2; the data stays applied"
    )
    assert dropd.contacts("northfield")["1"]["first_name"] == "Anne"
    assert not [run for run in dropd.runs("--feed", "students") if "data-file-missing" in (run["reason"] or "")]
