"""Feed runs through the running daemon: file selection, after-import, duplicates, run-now,
dry runs, window catch-up and files written by other means."""

import datetime
import json
import os
import time
from pathlib import Path

from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import ROW, place, run_now, start_with, students_feed


def test_most_recent_imports_the_newest_and_supersedes_the_rest(dropd):
    start_with(dropd, files="most_recent")
    place(dropd, "StudentData_1.csv", [1], age=300)
    place(dropd, "StudentData_2.csv", [2], age=200)
    place(dropd, "StudentData_3.csv", [3], age=100)
    runs = run_now(dropd)
    assert [(r["file"], r["status"]) for r in runs] == [
        ("StudentData_1.csv", "skipped"),
        ("StudentData_2.csv", "skipped"),
        ("StudentData_3.csv", "success"),
    ]
    assert runs[0]["reason"] == "superseded by StudentData_3.csv"
    assert set(dropd.contacts("northfield")) == {"3"}
    archive = sorted(os.listdir(dropd.home("northfield") / "imports" / "archive"))
    assert [name.split("_")[1] for name in archive] == ["1", "2", "3"]


def test_all_imports_each_file_oldest_first(dropd):
    start_with(dropd, files="all")
    place(dropd, "StudentData_b.csv", [2], age=200)
    place(dropd, "StudentData_c.csv", [3], age=100)
    place(dropd, "StudentData_a.csv", [1], age=300)
    runs = run_now(dropd)
    assert [(r["file"], r["status"]) for r in runs] == [
        ("StudentData_a.csv", "success"),
        ("StudentData_b.csv", "success"),
        ("StudentData_c.csv", "success"),
    ]
    assert set(dropd.contacts("northfield")) == {"1", "2", "3"}


def test_delete_after_import_takes_the_count_file_along_and_leaves_other_files(dropd):
    start_with(dropd, after_import="delete")
    place(dropd, "StudentData_1.csv", [1])
    place(dropd, "Other_1.csv", [2])
    (dropd.home("northfield") / "imports" / "StudentData_1_count.txt").write_text("1\n")
    assert [r["status"] for r in run_now(dropd)] == ["success"]
    assert sorted(os.listdir(dropd.home("northfield") / "imports")) == ["Other_1.csv", "archive"]


def test_identical_file_dropped_again_is_skipped_as_duplicate_unless_forced(dropd):
    start_with(dropd)
    place(dropd, "StudentData_1.csv", [1])
    run_now(dropd)
    place(dropd, "StudentData_again.csv", [1])
    [duplicate] = run_now(dropd)
    assert duplicate["status"] == "skipped" and duplicate["reason"].startswith(
        "duplicate: identical to the file imported by run"
    )
    assert len(os.listdir(dropd.home("northfield") / "imports" / "archive")) == 2
    place(dropd, "StudentData_forced.csv", [1])
    [forced] = run_now(dropd, "--force")
    assert forced["status"] == "success" and forced["details"]["unchanged"] == 1


def test_run_now_with_no_file_records_a_skipped_run(dropd):
    start_with(dropd)
    [run] = run_now(dropd)
    assert run["status"] == "skipped" and run["reason"].startswith("no-file:")
    assert run["trigger"] == "run-now"


def test_run_now_on_a_disabled_feed_says_so(dropd):
    start_with(dropd, enabled=False)
    result = dropd.cli("run-now", "students", check=False)
    assert result.returncode == 1 and "feed 'students' is disabled" in result.stderr


def test_run_now_without_a_daemon_says_so(dropd):
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.write_config()
    result = dropd.cli("run-now", "students", check=False)
    assert result.returncode == 1
    assert "dropd is not running" in result.stderr and "dropd ingest students FILE" in result.stderr


def test_dry_run_reports_and_changes_nothing(dropd, tmp_path):
    start_with(dropd)
    place(dropd, "StudentData_1.csv", [1])
    run_now(dropd)
    local = tmp_path / "StudentData_local.csv"
    local.write_text(
        HEADER + "\n1,Renamed,Last,202-555-0101,,,,\n2,New,Person,202-555-0102,,,,\n3,,Bad,202-555-0103,,,,\n"
    )
    result = dropd.cli("ingest", "students", str(local), "--dry-run", "--json")
    report = json.loads(result.stdout)
    assert (report["would_create"], report["would_update"], report["would_reject"]) == (1, 1, 1)
    assert report["errors"] == [
        {"row": 4, "code": "missing-value", "failure_type": "complete", "message": 'first_name ("First Name") is empty'}
    ]
    assert set(dropd.contacts("northfield")) == {"1"} and dropd.contacts("northfield")["1"]["first_name"] == "Name1"
    assert len(dropd.runs()) == 1 and local.exists()
    assert not (dropd.state_dir / "errors").exists()


def test_ingest_imports_a_local_file_and_leaves_it_in_place(dropd, tmp_path):
    start_with(dropd)
    local = tmp_path / "roster.csv"
    local.write_text(HEADER + "\n5,Five,Last,202-555-0105,,,,\n")
    [run] = json.loads(dropd.cli("ingest", "students", str(local), "--json").stdout)
    assert run["status"] == "success" and run["trigger"] == "ingest"
    assert local.exists() and "5" in dropd.contacts("northfield")


def overnight_zone() -> str:
    """A fixed-offset zone in which it is now 03:xx, so the overnight window is open."""
    hour = datetime.datetime.now(datetime.UTC).hour
    offset = (3 - hour + 12) % 24 - 12  # local = utc + offset, within -12..+11
    # Etc/GMT signs are inverted: Etc/GMT-5 is UTC+5.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def test_daemon_started_inside_a_window_catches_up_once(dropd):
    dropd.settings["daemon"]["timezone"] = overnight_zone()
    dropd.add_feed_partner("northfield", [students_feed(schedule=["overnight"])])
    place(dropd, "StudentData_1.csv", [1])
    dropd.start()
    [run] = dropd.wait_for_runs("students")
    assert run["trigger"] == "window:overnight" and run["status"] == "success"
    dropd.stop()
    dropd.start()
    time.sleep(1)
    assert len(dropd.runs()) == 1


def test_file_written_by_another_process_is_imported_once_closed_and_quiet(dropd):
    dropd.settings["daemon"]["quiet_period"] = "1s"
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    folder = dropd.home("northfield") / "imports"
    assert folder.is_dir()  # landing folders exist from the start
    with open(folder / "StudentData_job.csv", "w") as handle:
        handle.write(HEADER + "\n")
        handle.flush()
        time.sleep(2.5)  # open, but silent for longer than the quiet period
        assert dropd.runs() == []
        handle.write(ROW.format(id=9))
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success" and run["rows_applied"] == 1


def test_cli_names_an_unknown_feed_and_a_missing_file(dropd, tmp_path):
    start_with(dropd)
    unknown = dropd.cli("ingest", "nope", str(tmp_path / "x.csv"), check=False)
    assert unknown.returncode == 1
    assert "no feed named 'nope'" in unknown.stderr and "(feeds: students)" in unknown.stderr
    missing = dropd.cli("ingest", "students", str(tmp_path / "absent.csv"), check=False)
    assert missing.returncode == 1 and "absent.csv is not a file" in missing.stderr
    assert dropd.cli("run-now", "nope", check=False).stderr.startswith("dropd: no feed named 'nope'")
    assert dropd.runs() == []


def test_files_that_landed_while_the_daemon_was_stopped_are_imported_at_start(dropd):
    dropd.settings["daemon"]["quiet_period"] = "1s"
    dropd.add_feed_partner("northfield", [students_feed()])
    place(dropd, "StudentData_offline.csv", [1, 2], age=600)
    dropd.start()
    [run] = dropd.wait_for_runs("students", timeout=15)
    assert (run["file"], run["status"], run["rows_applied"]) == ("StudentData_offline.csv", "success", 2)
    assert dropd.find("file.arrived", via="watch")


def test_one_upload_is_one_arrival_and_one_run(dropd):
    dropd.settings["daemon"]["quiet_period"] = "1s"
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    dropd.upload("northfield", "/imports/StudentData_1.csv", (HEADER + "\n" + ROW.format(id=1)).encode())
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success"
    time.sleep(2.5)  # past the quiet period and two checks of due files: a second arrival would show
    arrived = dropd.find("file.arrived")
    assert [(Path(event["path"]).name, event["via"]) for event in arrived] == [("StudentData_1.csv", "upload")]
    assert len(dropd.runs()) == 1


def test_lftp_upload_is_complete_at_once_although_it_sets_the_time(dropd, tmp_path):
    """lftp sends MFMT after STOR; the changed time must not cancel the hand-off."""
    dropd.settings["daemon"]["quiet_period"] = "60s"
    dropd.add_feed_partner("northfield", [students_feed(schedule=[])])
    dropd.start()
    local = tmp_path / "StudentData_lftp.csv"
    local.write_text(HEADER + "\n" + ROW.format(id=4))
    os.utime(local, (1_600_000_000, 1_600_000_000))
    result = dropd.lftp("northfield", f"put {local} -o imports/StudentData_lftp.csv")
    assert result.returncode == 0, result.stderr
    landed = dropd.home("northfield") / "imports" / "StudentData_lftp.csv"
    assert landed.stat().st_mtime == 1_600_000_000, "lftp no longer sets the time; this test shows nothing"
    [run] = json.loads(dropd.cli("run-now", "students", "--json").stdout)
    assert (run["file"], run["status"]) == ("StudentData_lftp.csv", "success")


def test_a_landing_file_swapped_for_a_symlink_is_never_read(dropd, tmp_path):
    """A local user who can write the landing folder swaps a checked file for a link to a
    root-only file between the checks and the open: the import must not follow it."""
    from daemon.config.settings import load_config
    from daemon.feeds.runs import import_file
    from daemon.runs.lifecycle import RunContext
    from daemon.store import open_store

    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.write_config()
    config = load_config(dropd.config_file)
    partner, feed = config.feed("students")
    secret = tmp_path / "secret.csv"
    secret.write_text(HEADER + "\n" + ROW.format(id=66))
    secret.chmod(0o600)
    folder = dropd.home("northfield") / "imports"
    folder.mkdir(parents=True)
    (folder / "StudentData_swap.csv").symlink_to(secret)
    store = open_store(config)
    run = import_file(RunContext(store, config), partner, feed, folder / "StudentData_swap.csv", "arrival")
    assert run.status == "failed"
    assert run.reason == "unsafe-file: StudentData_swap.csv is a symbolic link; only regular files are imported"
    with store.reading() as tx:
        assert run.error_file is None and tx.contacts.listing("northfield") == []
    [moved, report] = sorted(os.listdir(folder / "failed"))
    assert report == moved + ".errors.csv"
    assert (folder / "failed" / moved).is_symlink() and secret.read_text().startswith(HEADER)


def test_a_file_replaced_after_it_was_read_is_not_archived(tmp_path):
    from daemon.feeds.csv_source import LandedFile

    path = tmp_path / "StudentData.csv"
    path.write_text("a\n")
    with LandedFile(path) as landed:
        assert landed.still_in_place()
        replacement = tmp_path / "other.csv"
        replacement.write_text("b\n")
        os.replace(replacement, path)
        assert not landed.still_in_place()


def test_ingest_verifies_a_count_file_beside_the_file(dropd, tmp_path):
    dropd.add_feed_partner("northfield", [students_feed(count_file="required")])
    dropd.write_config()
    local = tmp_path / "StudentData_x.csv"
    local.write_text(HEADER + "\n" + "".join(ROW.format(id=i) for i in (1, 2, 3)))
    missing = dropd.cli("ingest", "students", str(local), "--json", check=False)
    [run] = json.loads(missing.stdout)
    assert missing.returncode == 1 and run["status"] == "failed"
    assert run["reason"].startswith("count-file-missing: StudentData_x_count.txt is required")
    (tmp_path / "StudentData_x_count.txt").write_text("7\n")
    wrong = dropd.cli("ingest", "students", str(local), "--json", check=False)
    [run] = json.loads(wrong.stdout)
    assert wrong.returncode == 1 and run["reason"] == "count-mismatch: the count file said 7 rows, the file has 3"
    assert dropd.contacts("northfield") == {}
    (tmp_path / "StudentData_x_count.txt").write_text("3\n")
    [run] = json.loads(dropd.cli("ingest", "students", str(local), "--json").stdout)
    assert (run["status"], run["rows_applied"]) == ("success", 3)
    assert local.exists() and (tmp_path / "StudentData_x_count.txt").exists()


def test_an_upload_no_feed_takes_is_logged_with_what_the_feeds_expect(dropd):
    start_with(dropd)
    dropd.upload("northfield", "/imports/studentdata_2026.csv", (HEADER + "\n").encode())
    dropd.upload("northfield", "/imports/StudentData_ok.csv", (HEADER + "\n" + ROW.format(id=1)).encode())
    [unmatched] = dropd.wait_for("file.unmatched", partner="northfield")
    assert unmatched["path"] == "/imports/studentdata_2026.csv" and unmatched["expected"] == ["/imports/StudentData*"]
    time.sleep(0.5)
    assert len(dropd.find("file.unmatched")) == 1


def test_runs_and_contacts_read_well_at_the_command_line(dropd, tmp_path):
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.write_config()
    assert dropd.cli("runs").stdout == "no runs\n"
    unknown = dropd.cli("runs", "--feed", "nope", check=False)
    assert unknown.returncode != 0 and "no feed named 'nope'" in unknown.stderr
    local = tmp_path / "StudentData_cli.csv"
    local.write_text(HEADER + "\n" + ROW.format(id=1) + "2,,Two,202-555-0102,,,,\n" + ROW.format(id=33))
    dropd.cli("ingest", "students", str(local))
    first, counts, *_ = dropd.cli("runs").stdout.splitlines()
    assert first.split("  ")[2:] == ["students (contacts)", "success", "ingest", "StudentData_cli.csv"]
    assert first.split("  ")[1].endswith((" EST", " EDT"))  # daemon.timezone is America/New_York
    assert counts.strip() == "3 rows: 2 created, 1 rejected"
    lines = dropd.cli("contacts", "--partner", "northfield").stdout.splitlines()
    assert lines[0].split() == ["CONTACT", "ID", "NAME", "MOBILE", "EMAIL", "CRM", "ID", "STATUS"]
    assert len({line.index("+1202") for line in lines[1:3]}) == 1, "columns are aligned"
    assert lines[-1] == "2 contacts"


def test_run_now_says_when_a_file_still_arriving_will_be_complete(dropd):
    start_with(dropd, quiet="60s")
    place(dropd, "StudentData_new.csv", [1], age=0)
    [run] = json.loads(dropd.cli("run-now", "students", "--json").stdout)
    assert run["status"] == "skipped"
    assert run["reason"].startswith(
        "no-file: no complete file starting with 'StudentData' in /imports (1 file still arriving: "
    )
    assert "StudentData_new.csv, complete in about " in run["reason"] and run["reason"].endswith(" s)")


def test_runs_filter_by_start_date_and_kind(dropd):
    """Seed 000's readers ask "what came in last night": `dropd runs` had no date or kind filter."""
    import datetime
    import zoneinfo

    from tests.helpers import MESSAGES_HEADER, messages_feed

    dropd.add_feed_partner("northfield", [students_feed(schedule=["on_arrival"]), messages_feed()])
    dropd.start()
    dropd.upload("northfield", "/imports/StudentData_1.csv", (HEADER + "\n" + ROW.format(id=1)).encode())
    dropd.upload(
        "northfield", "/log/messages_1.csv", (MESSAGES_HEADER + "\n1,web,2026-11-20T10:00:00Z,hi,,,,,,,,m1\n").encode()
    )
    dropd.wait_for_runs("students")
    dropd.wait_for_runs("log")
    zone = zoneinfo.ZoneInfo(dropd.settings["daemon"]["timezone"])
    today = datetime.datetime.now(zone).date()
    yesterday, tomorrow = today - datetime.timedelta(days=1), today + datetime.timedelta(days=1)

    def kinds(*args) -> list[str]:
        return sorted(run["kind"] for run in dropd.runs(*args))

    assert kinds() == ["contacts", "messages"]
    assert kinds("--type", "messages") == ["messages"]
    assert kinds("--since", str(today), "--until", str(today)) == ["contacts", "messages"]
    assert kinds("--until", str(yesterday)) == [] and kinds("--since", str(tomorrow)) == []
    assert kinds("--since", f"{today}T00:00", "--type", "contacts") == ["contacts"]
    wrong = dropd.cli("runs", "--since", "27/11/2026", check=False)
    assert wrong.returncode == 1 and "--since '27/11/2026' is not a date (2026-11-27)" in wrong.stderr
    unknown = dropd.cli("runs", "--type", "pdf", check=False)
    assert unknown.returncode == 1 and "no kind named 'pdf'; kinds: activity, contacts," in unknown.stderr
    listing = dropd.cli("runs", "--type", "messages").stdout
    assert "  log (messages)  success  " in listing
