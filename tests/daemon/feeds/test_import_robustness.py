"""A daemon killed mid-import, and memory that does not grow with the file."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import peak_rss_kib, run_now, students_feed

AREAS = (201, 202, 203, 212, 213, 214, 215, 216, 217, 218)


def phone(index: int) -> str:
    area = AREAS[index % len(AREAS)]
    exchange = 234 + (index // len(AREAS)) % 600
    line = (index // (len(AREAS) * 600)) % 10000
    return f"({area}) {exchange}-{line:04d}"


def write_roster(path: Path, rows: int, filler: int = 0, quoted: bool = False) -> None:
    """A contacts file; `filler` characters of custom data make the rows long; `quoted` puts
    each first name in quotes, which sends every row down the slow path (csv module, one row
    at a time), so that the import takes seconds."""
    long_value = "x" * min(filler, 1000)
    quote = '"' if quoted else ""
    with open(path, "w", newline="") as handle:
        handle.write("Student ID,First Name,Last Name,Cell,Email,CRM,Text Opt Out,Major,Notes\n")
        for index in range(rows):
            handle.write(
                f"S{index:07d},{quote}First{index}{quote},Last{index},{phone(index)},s{index}@example.org,,N,"
                f"{long_value},{long_value}\n"
            )


def feed_with_notes(**overrides):
    feed = students_feed(schedule=[], **overrides)
    feed["custom"] = [{"field": "Major", "column": "Major"}, {"field": "Notes", "column": "Notes"}]
    return feed


def count_contacts(dropd) -> int:
    return len(json.loads(dropd.cli("contacts", "--partner", "northfield", "--json").stdout))


def test_sigkill_mid_import_leaves_store_untouched_and_file_is_reimported_once(dropd):
    dropd.settings["daemon"]["quiet_period"] = "1s"
    dropd.add_feed_partner("northfield", [feed_with_notes()])
    dropd.start()
    rows = 150_000
    landing = dropd.home("northfield") / "imports"
    write_roster(landing / "StudentData_big.csv", rows)
    dropd.wait_for("file.arrived", path=str(landing / "StudentData_big.csv"))
    trigger = dropd.cli("run-now", "students", "--timeout", "0.1", check=False)
    assert trigger.returncode == 0, trigger.stderr
    dropd.wait_for("run.started", feed="students")
    # Well into the import: batches of rows written in the open transaction (the WAL grows).
    wal = dropd.state_dir / "dropd.db-wal"
    deadline = time.monotonic() + 60
    while not (wal.exists() and wal.stat().st_size > 8 * 2**20) and time.monotonic() < deadline:
        time.sleep(0.01)
    dropd.process.send_signal(signal.SIGKILL)
    dropd.process.wait(10)
    assert not dropd.find("run.finished")
    # Before the run: nothing applied, the file still in its landing folder.
    assert count_contacts(dropd) == 0
    assert sorted(os.listdir(landing)) == ["StudentData_big.csv", "archive"]
    [interrupted] = dropd.runs()
    assert interrupted["status"] == "running"

    dropd.stop()
    dropd.start()
    finished = dropd.wait_for_runs("students", 2, timeout=180)
    assert finished[0]["status"] == "failed" and finished[0]["reason"].startswith("interrupted")
    assert finished[1]["status"] == "success" and finished[1]["trigger"] == "recovery"
    assert finished[1]["rows_applied"] == rows
    assert count_contacts(dropd) == rows
    assert os.listdir(landing) == ["archive"]
    time.sleep(1)  # a third run (the file imported twice) would show by now
    assert len(dropd.runs()) == 2


def test_a_file_the_daemon_keeps_dying_on_is_set_aside_instead_of_crash_looping(dropd):
    """An import that kills the daemon (the OOM killer, in the case seen) was retried at every
    start by the recovery run, which killed it again, for good."""
    dropd.settings["daemon"]["quiet_period"] = "1s"
    dropd.add_feed_partner("northfield", [feed_with_notes()])
    dropd.start()
    landing = dropd.home("northfield") / "imports"
    write_roster(landing / "StudentData_deadly.csv", 60_000, quoted=True)
    dropd.wait_for("file.arrived", path=str(landing / "StudentData_deadly.csv"))
    assert dropd.cli("run-now", "students", "--timeout", "0.1", check=False).returncode == 0
    for started in (1, 2):  # the first run, then the recovery run at the next start
        dropd.wait_for("run.started", feed="students", count=started, timeout=60)
        dropd.process.send_signal(signal.SIGKILL)
        dropd.process.wait(10)
        dropd.stop()
        dropd.start()
    runs = dropd.wait_for_runs("students", 3, timeout=60)
    assert [run["status"] for run in runs] == ["failed", "failed", "failed"]
    assert [run["reason"].split(":")[0] for run in runs] == ["interrupted", "interrupted", "interrupted-repeatedly"]
    assert runs[2]["reason"] == (
        "interrupted-repeatedly: the daemon stopped 2 times while importing this file (killed, or out of memory); "
        "it is set aside in failed/ and not tried again by itself. See the daemon log of those runs, then import it "
        "by hand with `dropd ingest students FILE --force` once the cause is fixed"
    )
    assert count_contacts(dropd) == 0
    assert sorted(os.listdir(landing / "failed"))[0].startswith("StudentData_deadly")
    time.sleep(1)
    assert len(dropd.runs()) == 3


def test_memory_stays_flat_as_files_grow(dropd):
    dropd.settings["daemon"]["quiet_period"] = "1s"
    dropd.add_feed_partner("northfield", [feed_with_notes(files="all")])
    dropd.start()
    landing = dropd.home("northfield") / "imports"
    peaks = []
    for label, rows in (("20MB", 10_000), ("200MB", 100_000)):
        path = landing / f"StudentData_{label}.csv"
        write_roster(path, rows, filler=1000)
        size = path.stat().st_size
        [run] = run_now(dropd)
        assert run["status"] == "success" and run["rows_applied"] == rows, run
        peaks.append((label, size, peak_rss_kib(dropd.process.pid)))
    (_, small_size, small_peak), (_, big_size, big_peak) = peaks
    assert big_size > 9 * small_size
    # Ten times the data may cost a little more (allocator, page cache of SQLite), never ten times.
    assert big_peak - small_peak < 40 * 1024, peaks


HEADER_LINE = "Student ID,First Name,Last Name,Cell,Email,CRM,Text Opt Out,Major,Notes\n"
MEMORY_LIMIT_KIB = 150 * 1024


def ingest_measured(dropd, path: Path) -> tuple[dict, int]:
    """`dropd ingest` in its own process: its run, and the process's peak RSS in KiB.

    VmHWM, not ru_maxrss: the latter carries over the forking parent's peak across exec.
    """
    script = (
        "import json, sys\n"
        "from daemon.cli import main\n"
        "main(sys.argv[1:])\n"
        "peak = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
        "print(json.dumps({'peak_kib': int(peak)}), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "ingest", "students", str(path), "--json", "-c", str(dropd.config_file)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout, f"dropd ingest ended {result.returncode}: {result.stderr[-2000:]}"
    [run] = json.loads(result.stdout)
    peak = json.loads(result.stderr.strip().splitlines()[-1])["peak_kib"]
    return run, peak


@pytest.fixture
def ingesting(dropd):
    dropd.add_feed_partner("northfield", [feed_with_notes()])
    dropd.write_config()
    return dropd


def test_a_300_mib_line_without_quotes_fails_the_file_in_bounded_memory(ingesting, tmp_path):
    path = tmp_path / "StudentData_longline.csv"
    with open(path, "w") as handle:
        handle.write(HEADER_LINE + "S1,")
        chunk = "A" * (1 << 20)
        for _ in range(300):
            handle.write(chunk)
        handle.write(",Last,(202) 555-0100,,,N,,\n")
    run, peak = ingest_measured(ingesting, path)
    assert run["status"] == "failed"
    assert run["reason"] == (
        "malformed-row: row 2: a line is longer than 4,194,304 characters; this is not a CSV file a person wrote"
    )
    assert peak < MEMORY_LIMIT_KIB, f"peak RSS {peak} KiB"
    assert count_contacts(ingesting) == 0


def test_a_512_mib_sparse_file_fails_in_bounded_memory(ingesting, tmp_path):
    path = tmp_path / "StudentData_sparse.csv"
    with open(path, "wb") as handle:
        handle.truncate(512 << 20)
    run, peak = ingest_measured(ingesting, path)
    assert run["status"] == "failed" and run["reason"].startswith("malformed-row: row 1: a line is longer than")
    assert peak < MEMORY_LIMIT_KIB, f"peak RSS {peak} KiB"


def test_memory_does_not_grow_with_record_size(ingesting, tmp_path):
    """Batches held 2,000 records whatever their size: 250 records of 4 MB took the daemon from
    87 MiB to 2 GB. 30 records of 4 MB (4 cells of 1 MB each) must cost about what one does."""
    paths = {}
    for records in (1, 30):
        paths[records] = path = tmp_path / f"StudentData_{records}_big_records.csv"
        with open(path, "w") as handle:
            handle.write(HEADER_LINE)
            for index in range(records):
                cell = "n" * 1_000_000
                handle.write(f"B{index},{cell},{cell},{phone(900_000 + index)},,,N,{cell},{cell}\n")
    (one_run, one_peak), (many_run, many_peak) = (
        ingest_measured(ingesting, paths[1]),
        ingest_measured(ingesting, paths[30]),
    )
    assert (one_run["rows_in_file"], many_run["rows_in_file"]) == (1, 30), (one_run, many_run)
    assert many_peak - one_peak < 48 * 1024, f"30 records of 4 MB: {many_peak} KiB, one: {one_peak} KiB"


def test_nul_bytes_and_oversized_unquoted_cells_reject_their_row_only(ingesting, tmp_path):
    path = tmp_path / "StudentData_nul.csv"
    path.write_text(
        HEADER_LINE
        + "S1,Ada\x00,Lovelace,(202) 555-0100,,,N,,\n"
        + "S2," + "B" * (2 << 20) + ",Babbage,(202) 555-0101,,,N,,\n"
        + "S3,Grace,Hopper,(202) 555-0102,,,N,,\n"
    )  # fmt: skip
    run, _ = ingest_measured(ingesting, path)
    assert (run["status"], run["rows_in_file"], run["rows_applied"], run["rows_rejected"]) == ("success", 3, 1, 2)
    with open(run["error_file"], encoding="utf-8-sig") as handle:
        errors = [line.split(",")[:4] for line in handle.read().splitlines()[1:]]
    assert [error[:3] for error in errors] == [["2", "malformed-row", "complete"], ["3", "malformed-row", "complete"]]
    listing = ingesting.cli("contacts", "--partner", "northfield").stdout
    assert "\x00" not in listing and "Grace" in listing and "Ada" not in listing


def test_a_long_import_blocks_neither_readers_nor_another_feed(dropd):
    """An import holds the store's write lock for its whole file: `dropd runs` must still
    answer at once and show it running, and another feed's run waits its turn (queued)."""
    dropd.settings["daemon"]["quiet_period"] = "1s"
    subscribers = {
        "name": "list",
        "kind": "subscribers",
        "path": "/lists",
        "prefix": "subs",
        "schedule": ["on_arrival"],
    }
    dropd.add_feed_partner("northfield", [feed_with_notes(), subscribers])
    dropd.start()
    big_file = dropd.home("northfield") / "imports" / "StudentData_big.csv"
    write_roster(big_file, 80_000, quoted=True)
    dropd.wait_for("file.arrived", path=str(big_file))
    assert dropd.cli("run-now", "students", "--timeout", "0.1").returncode == 0
    dropd.wait_for("run.started", feed="students")
    started = time.monotonic()
    running = dropd.runs("--feed", "students")
    assert time.monotonic() - started < 10
    assert [run["status"] for run in running] == ["running"]
    dropd.upload("northfield", "/lists/subs_1.csv", b"email\na@example.org\nb@example.org\n")
    dropd.wait_for("run.queued", feed="list", behind="students", timeout=30)
    listing = dropd.cli("runs").stdout
    assert "waiting for students to finish" in listing and "list" in listing.split("waiting")[0]
    [big] = dropd.wait_for_runs("students", timeout=300)
    [small] = dropd.wait_for_runs("list", timeout=60)
    assert big["status"] == "success" and big["rows_applied"] == 80_000
    assert small["status"] == "success" and small["rows_applied"] == 2
    assert not dropd.find("run.request_failed")
    assert small["started"] > big["finished"] or small["id"] > big["id"]
