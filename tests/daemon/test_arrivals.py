"""The kernel's answer to "is anyone still writing this file?" (read leases)."""

import subprocess
import sys
import time

from daemon.arrivals import Arrivals, has_writer


def test_has_writer_sees_another_process_holding_the_file_open(tmp_path):
    path = tmp_path / "StudentData.csv"
    path.write_text("header\n")
    writer = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; f = open({str(path)!r}, 'a'); print('open', flush=True); time.sleep(30)"],
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
