"""The kernel's answer to "is anyone still writing this file?" (read leases)."""

import os
import subprocess
import sys
import time

from daemon.feeds.arrivals import Arrivals, has_writer


def test_has_writer_sees_another_process_holding_the_file_open(tmp_path):
    path = tmp_path / "StudentData.csv"
    path.write_text("header\n")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; f = open({str(path)!r}, 'a'); print('open', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline() == "open\n"
        assert has_writer(path) is True
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert has_writer(path) is False


def test_a_quiet_closed_file_is_complete_and_a_fresh_one_is_not(tmp_path):
    clock = [time.time()]
    arrivals = Arrivals(30, on_arrival=lambda path: None, clock=lambda: clock[0])
    path = tmp_path / "StudentData.csv"
    path.write_text("header\n")
    assert not arrivals.is_complete(path)
    clock[0] += 31
    assert arrivals.is_complete(path)
    assert not arrivals.is_complete(tmp_path / "missing.csv")


def test_rescan_reports_each_complete_file_once(tmp_path):
    clock = [time.time() + 60]
    reported = []
    arrivals = Arrivals(30, on_arrival=reported.append, clock=lambda: clock[0])
    old, fresh = tmp_path / "StudentData_old.csv", tmp_path / "StudentData_new.csv"
    old.write_text("header\n")
    arrivals.rescan([old])
    arrivals.watch(tmp_path)
    try:
        deadline = time.monotonic() + 5
        while not reported and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reported == [old]
        arrivals.rescan([old])
        fresh.write_text("header\n")
        os.utime(fresh, (clock[0], clock[0]))
        arrivals.rescan([old, fresh])
        time.sleep(1)
        assert reported == [old], "a file still in its quiet period is not complete"
        clock[0] += 31
        deadline = time.monotonic() + 5
        while len(reported) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reported == [old, fresh]
    finally:
        arrivals.stop()


def test_a_handed_off_file_rewritten_by_another_process_waits_again(tmp_path):
    clock = [time.time()]
    reported = []
    arrivals = Arrivals(30, on_arrival=reported.append, clock=lambda: clock[0])
    path = tmp_path / "StudentData.csv"
    path.write_text("header\n")
    arrivals.handed_off(path)
    os.utime(path, (1, 1))  # timestamps set by the uploader do not matter
    assert arrivals.is_complete(path) and reported == [path]
    arrivals.handed_off(path)
    assert reported == [path], "the same file is one arrival"
    path.write_text("header\nrow\n")
    arrivals._changed(path, written=True)
    assert not arrivals.is_complete(path)


def test_an_inotify_queue_overflow_rescans_at_once(tmp_path):
    """watchdog only logs the overflow; the kernel's queue is hard to overflow on purpose, so
    the test emits watchdog's own log record for a file whose events were never seen."""
    import logging

    unseen = tmp_path / "StudentData.csv"
    unseen.write_text("header\n")
    os.utime(unseen, (1, 1))
    present = []
    reported = []
    arrivals = Arrivals(0.1, on_arrival=reported.append, landed=lambda: list(present), rescan_every=3600)
    arrivals.watch(tmp_path)
    try:
        present.append(unseen)
        time.sleep(0.5)
        assert reported == []
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        deadline = time.monotonic() + 5
        while not reported and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reported == [unseen]
    finally:
        arrivals.stop()
