"""The Prometheus endpoint of the running daemon, scraped over HTTP after real traffic."""

import os
import re
import socket
import time
import urllib.error
import urllib.request

import pytest

from daemon.metrics import METRICS_CLIENTS, METRICS_IDLE_TIMEOUT
from tests.helpers import CONTACTS_HEADER, free_port, students_feed


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def value(text: str, name: str, **labels) -> float:
    """The sample `name` whose labels are exactly `labels` (in any order)."""
    for line in text.splitlines():
        found = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if found and found.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or "")) == labels:
            return float(found.group(3))
    raise AssertionError(f"no {name} {labels} in:\n{text}")


def test_metrics_count_logins_transfers_runs_and_read_gauges(dropd):
    port = free_port()
    dropd.settings["metrics"] = {"listen": f"127.0.0.1:{port}"}
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    body = f"{CONTACTS_HEADER}\n1,Ada,Lovelace,202-555-0143,,,,\n2,,Turing,202-555-0199,,,,\n".encode()
    dropd.upload("northfield", "/imports/StudentData_1.csv", body)
    dropd.wait_for_runs("students")
    transport, _ = dropd.paramiko_sftp("northfield")  # a session open while scraped
    try:
        deadline = time.monotonic() + 10
        while True:
            text = scrape(port)
            if value(text, "dropd_sessions", protocol="sftp") >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        transport.close()
    assert value(text, "dropd_sessions", protocol="sftp") >= 1
    assert value(text, "dropd_logins_total", protocol="sftp", outcome="succeeded") >= 2
    assert value(text, "dropd_transfers_total", direction="upload", status="completed") == 1
    assert value(text, "dropd_transfer_bytes_total", direction="upload") == len(body)
    assert value(text, "dropd_runs_total", feed="students", status="success") == 1
    assert value(text, "dropd_rows_total", feed="students", outcome="applied") == 1
    assert value(text, "dropd_rows_total", feed="students", outcome="rejected") == 1
    assert value(text, "dropd_run_duration_seconds_count", feed="students") == 1
    assert value(text, "dropd_last_success_timestamp_seconds", feed="students") > time.time() - 60
    assert value(text, "dropd_runs_queued") == 0 and value(text, "dropd_mail_outbox") == 0
    assert dropd.find("server.listening", protocol="metrics")


def daemon_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.serial
def test_idle_scrapers_are_bounded_and_timed_out_and_only_metrics_is_served(dropd):
    """1,000 idle clients held 1,015 threads for good, and every path answered 200 (100 here)."""
    port = free_port()
    dropd.settings["metrics"] = {"listen": f"127.0.0.1:{port}"}
    dropd.add_partner("northfield")
    dropd.start()
    scrape(port)
    before = daemon_threads(dropd.process.pid)
    idle = []
    for n in range(100):
        try:
            idle.append(
                socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(f"127.0.2.{n + 1}", 0))
            )
        except OSError:
            pass
    try:
        time.sleep(1)
        assert daemon_threads(dropd.process.pid) <= before + METRICS_CLIENTS + 2
        deadline = time.monotonic() + METRICS_IDLE_TIMEOUT + 10
        while True:  # once the idle ones are timed out, a scrape gets through
            try:
                assert "dropd_logins_total" in scrape(port)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
    finally:
        for sock in idle:
            sock.close()
    for path in ("/", "/metrics/../x", "/favicon.ico", "/metricsX"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
        refused.value.close()
        assert refused.value.code == 404, path
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 405
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?name[]=dropd_bans_total", timeout=10) as response:
        assert response.status == 200
