"""Files dropped over SFTP and FTPS by real clients become runs of the running daemon: the
import, the archive, the error CSV, and the partner's own copy of it to download."""

import csv
import os
from pathlib import Path

import pytest

from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import students_feed


@pytest.fixture
def school(dropd):
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    return dropd


def drop(dropd, name: str, text: str) -> dict:
    """Upload a file over SFTP (paramiko) and return its finished run."""
    before = len(dropd.runs("--feed", "students"))
    dropd.upload("northfield", f"/imports/{name}", text.encode())
    return dropd.wait_for_runs("students", before + 1)[-1]


def error_rows(run: dict) -> list[dict]:
    with open(run["error_file"], encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sftp_upload_becomes_contacts_run_archive_and_error_file(school):
    run = drop(
        school,
        "StudentData_2026_11_23.csv",
        f"{HEADER}\n0042,Ada,Lovelace,(202) 555-0143,ada@example.org,C1,N,Maths\n"
        "0043,Alan,Turing,202-555-0199,bad-email,C2,,Logic\n",
    )
    assert run["status"] == "success" and run["trigger"] == "arrival"
    assert (run["rows_in_file"], run["rows_applied"], run["rows_rejected"]) == (2, 2, 0)
    contacts = school.contacts("northfield")
    assert contacts["0042"]["mobile_number"] == "+12025550143"
    assert contacts["0042"]["custom"] == {"Major": "Maths"}
    assert contacts["0043"]["email"] is None and contacts["0043"]["opted_out"] is False
    [error] = error_rows(run)
    assert error["row"] == "3" and error["code"] == "invalid-email" and error["failure_type"] == "partial"
    assert error["Student ID"] == "0043" and "bad-email" in error["message"]
    assert Path(run["error_file"]).read_bytes()[:3] == b"\xef\xbb\xbf"
    archive = sorted(os.listdir(school.home("northfield") / "imports" / "archive"))
    assert len(archive) == 2 and archive[0].startswith("StudentData_2026_11_23_") and archive[0].endswith("Z.csv")
    assert archive[1] == archive[0] + ".errors.csv"  # the partner's copy of the error CSV
    assert [p for p in os.listdir(school.home("northfield") / "imports") if p != "archive"] == []


def test_ftps_upload_is_imported(school, tmp_path):
    local = tmp_path / "StudentData_ftps.csv"
    local.write_text(f"{HEADER}\n7,Grace,Hopper,202-555-0101,g@example.org,,,\n")
    school.lftp("northfield", f"mkdir -f imports; put {local} -o imports/StudentData_ftps.csv")
    run = school.wait_for_runs("students")[-1]
    assert run["status"] == "success" and run["file"] == "StudentData_ftps.csv"
    assert school.contacts("northfield")["7"]["first_name"] == "Grace"


def test_the_partner_downloads_why_a_file_had_errors(school, client_key, tmp_path):
    run = drop(school, "StudentData_r.csv", f"{HEADER}\n1,Ann,One,202-555-0101,,,,\n2,,Two,202-555-0102,,,,\n")
    assert run["status"] == "success"
    drop(school, "StudentData_m.csv", "Student ID,First Name\n1,Ann\n")
    listing = school.lftp("northfield", "cls -1 imports/archive imports/failed")
    names = listing.stdout.split()
    archived = next(
        name for name in names if name.startswith("imports/archive/StudentData_r_") and name.endswith(".csv.errors.csv")
    )
    failed = next(
        name for name in names if name.startswith("imports/failed/StudentData_m_") and name.endswith(".csv.errors.csv")
    )
    for name in (archived, failed):
        assert school.lftp("northfield", f"get {name} -o {tmp_path / Path(name).name}").returncode == 0
    with open(tmp_path / Path(archived).name, encoding="utf-8-sig", newline="") as handle:
        assert [(row["row"], row["code"]) for row in csv.DictReader(handle)] == [("3", "missing-value")]
    with open(tmp_path / Path(failed).name, encoding="utf-8-sig", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["code"], row["failure_type"]) == ("missing-column", "file") and "'Last Name'" in row["message"]
    assert len(school.runs("--feed", "students")) == 2, "a report is never imported as data"


def test_the_partner_downloads_the_error_report_with_openssh_sftp(dropd, client_key, tmp_path):
    dropd.add_feed_partner("northfield", [students_feed()], authorized_keys=[client_key.public])
    dropd.start()
    local = tmp_path / "StudentData_k.csv"
    local.write_text(f"{HEADER}\n1,Ann,One,202-555-0101,,,,\n2,,Two,202-555-0102,,,,\n")
    put = dropd.openssh_sftp("northfield", client_key, f"put {local} imports/StudentData_k.csv\n")
    assert put.returncode == 0, put.stderr
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success" and run["rows_rejected"] == 1
    listing = dropd.openssh_sftp("northfield", client_key, "ls -1 imports/archive\n")
    [report] = [name for name in listing.stdout.split() if name.endswith(".csv.errors.csv")]
    got = dropd.openssh_sftp("northfield", client_key, f"get {report} {tmp_path / 'report.csv'}\n")
    assert got.returncode == 0, got.stderr
    with open(tmp_path / "report.csv", encoding="utf-8-sig", newline="") as handle:
        assert [(row["row"], row["code"]) for row in csv.DictReader(handle)] == [("3", "missing-value")]
