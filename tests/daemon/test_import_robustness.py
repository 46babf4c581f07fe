"""A daemon killed mid-import, and memory that does not grow with the file."""

import json
import os
import signal
import time
from pathlib import Path

from tests.daemon.test_runs import run_now
from tests.handlers.test_contacts import students_feed

AREAS = (201, 202, 203, 212, 213, 214, 215, 216, 217, 218)


def phone(index: int) -> str:
    area = AREAS[index % len(AREAS)]
    exchange = 234 + (index // len(AREAS)) % 600
    line = (index // (len(AREAS) * 600)) % 10000
    return f"({area}) {exchange}-{line:04d}"


def write_roster(path: Path, rows: int, filler: int = 0) -> None:
    """A contacts file; `filler` characters of custom data make the rows long."""
    long_value = "x" * min(filler, 1000)
    with open(path, "w", newline="") as handle:
        handle.write("Student ID,First Name,Last Name,Cell,Email,CRM,Text Opt Out,Major,Notes\n")
        for index in range(rows):
            handle.write(f"S{index:07d},First{index},Last{index},{phone(index)},s{index}@example.org,,N,{long_value},{long_value}\n")


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
    rows = 40_000
    landing = dropd.home("northfield") / "imports"
    write_roster(landing / "StudentData_big.csv", rows)
    time.sleep(2)
    trigger = dropd.cli("run-now", "students", "--timeout", "0.1", check=False)
    assert trigger.returncode == 0, trigger.stderr
    dropd.wait_for("run.started", feed="students")
    time.sleep(1.0)
    dropd.process.send_signal(signal.SIGKILL)
    dropd.process.wait(10)
    assert not dropd.find("run.finished")
    # Before the run: nothing applied, the file still in its landing folder.
    assert count_contacts(dropd) == 0
    assert os.listdir(landing) == ["StudentData_big.csv"]
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
    time.sleep(1)
    assert len(dropd.runs()) == 2


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


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
