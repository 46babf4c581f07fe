"""The daemon's lifecycle through real signals: reload, graceful stop, systemd notifications."""

import io
import json
import os
import signal
import socket
import subprocess
import time

import paramiko
import pytest

from daemon.dropzone.passwords import hash_password
from tests.helpers import PASSWORD, students_feed

NEW_PASSWORD = "a brand new password"


def test_sighup_adds_a_partner_and_changes_a_password_without_dropping_sessions(dropd):
    dropd.add_partner("northfield")
    dropd.start()
    transport, sftp = dropd.paramiko_sftp("northfield")
    with transport:
        sftp.putfo(io.BytesIO(b"before"), "/before.csv")
        (dropd.partners_dir / "northfield.toml").write_text(
            f'[partner]\nname = "northfield"\npassword_hash = "{hash_password(NEW_PASSWORD)}"\n'
        )
        dropd.add_partner("eastgate")
        dropd.signal(signal.SIGHUP)
        [reloaded] = dropd.wait_for("config.reloaded", partners=2)
        assert reloaded["partners_added"] == ["eastgate"] and reloaded["partners_changed"] == ["northfield"]
        assert "partners_removed" not in reloaded and "feeds_added" not in reloaded
        # The connected session carries on.
        sftp.putfo(io.BytesIO(b"after"), "/after.csv")
        assert sorted(sftp.listdir("/")) == ["after.csv", "before.csv"]
    with pytest.raises(paramiko.AuthenticationException):
        dropd.paramiko_sftp("northfield", PASSWORD)
    for user, password in (("northfield", NEW_PASSWORD), ("eastgate", PASSWORD)):
        transport, _ = dropd.paramiko_sftp(user, password)
        transport.close()
    assert dropd.home("eastgate").is_dir()


def test_broken_config_on_sighup_keeps_the_running_one(dropd):
    dropd.add_partner("northfield")
    dropd.start()
    (dropd.partners_dir / "northfield.toml").write_text('[partner]\nname = "northfield"\npassword_hash = \n')
    dropd.add_partner("eastgate")
    dropd.signal(signal.SIGHUP)
    rejected = dropd.wait_for("config.reload_rejected")[0]
    assert any("northfield.toml" in error and "is not valid TOML" in error for error in rejected["errors"])
    assert dropd.process.poll() is None
    reload = json.loads(dropd.cli("status", "--json", check=False).stdout)["last_reload"]
    assert reload["accepted"] is False and reload["errors"] == rejected["errors"]
    [line] = [line for line in dropd.cli("status", check=False).stdout.splitlines() if "last reload" in line]
    assert line.startswith("  last reload REJECTED at ") and f"old config kept: {rejected['errors'][0]}" in line
    transport, _ = dropd.paramiko_sftp("northfield", PASSWORD)
    transport.close()
    with pytest.raises(paramiko.AuthenticationException):
        dropd.paramiko_sftp("eastgate", PASSWORD)


def test_dropd_reload_answers_with_the_outcome(dropd):
    """What `systemctl reload` runs: it failed with the daemon's own credentials out of reach
    when it was `dropd check-config` beside a SIGHUP."""
    dropd.add_partner("northfield")
    dropd.start()
    (dropd.partners_dir / "broken.toml").write_text("[partner\n")
    refused = dropd.cli("reload", check=False)
    assert refused.returncode == 1
    assert "broken.toml" in refused.stderr and "the running one stays (1 error(s))" in refused.stderr
    (dropd.partners_dir / "broken.toml").unlink()
    dropd.add_partner("eastgate")
    accepted = dropd.cli("reload")
    assert accepted.returncode == 0 and accepted.stdout.startswith("dropd reloaded ")
    transport, _ = dropd.paramiko_sftp("eastgate", PASSWORD)
    transport.close()


def slow_upload(dropd, path, size, rate="200k"):
    source = dropd.root / "upload.bin"
    source.write_bytes(os.urandom(size))
    return subprocess.Popen(
        [
            "curl",
            "-sS",
            "--ssl-reqd",
            "--insecure",
            "--limit-rate",
            rate,
            "--user",
            f"northfield:{PASSWORD}",
            "-T",
            str(source),
            f"ftp://127.0.0.1:{dropd.ftp_port}{path}",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for_transfer_start(dropd, partner, timeout=15):
    deadline = time.monotonic() + timeout
    while not any(name.startswith(".dropd-") for name in os.listdir(dropd.home(partner))):
        assert time.monotonic() < deadline, "upload did not start"
        time.sleep(0.05)


def test_sigterm_waits_for_an_open_transfer_then_exits_0(dropd):
    dropd.add_partner("northfield")
    dropd.start()
    upload = slow_upload(dropd, "/finishing.csv", 600_000)
    wait_for_transfer_start(dropd, "northfield")
    dropd.signal(signal.SIGTERM)
    dropd.wait_for("daemon.stopping")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", dropd.sftp_port), timeout=2).close()
    assert upload.wait(30) == 0, upload.stderr.read()
    upload.stderr.close()
    assert dropd.process.wait(30) == 0
    assert (dropd.home("northfield") / "finishing.csv").stat().st_size == 600_000
    assert not dropd.find("daemon.transfers_cut")


def test_sigterm_cuts_a_transfer_that_outlasts_grace_time_and_leaves_no_file(dropd):
    dropd.settings["daemon"]["grace_time"] = "1s"
    dropd.add_partner("northfield")
    dropd.start()
    upload = slow_upload(dropd, "/too-slow.csv", 5_000_000, rate="100k")
    wait_for_transfer_start(dropd, "northfield")
    dropd.signal(signal.SIGTERM)
    assert dropd.process.wait(30) == 0
    upload.wait(30)
    upload.stderr.close()
    assert dropd.find("daemon.transfers_cut")
    assert os.listdir(dropd.home("northfield")) == []


def test_systemd_notifications(dropd, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.settimeout(10)

    def next_message(wanted: str) -> str:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            message = listener.recv(4096).decode()
            if wanted in message.splitlines():
                return message
        raise AssertionError(f"no {wanted}")

    with listener:
        dropd.add_partner("northfield")
        dropd.start({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"})
        ready = next_message("READY=1")
        assert "STATUS=serving 1 partners" in ready
        ping = next_message("WATCHDOG=1")  # with the same summary as `dropd status`, kept current
        assert "STATUS=serving 1 partners; sessions: none; running: none; queued: 0; bans: 0" in ping.splitlines()
        dropd.signal(signal.SIGHUP)
        reloading = next_message("RELOADING=1")
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading.splitlines())
        next_message("READY=1")
        dropd.signal(signal.SIGTERM)
        next_message("STOPPING=1")
        assert dropd.process.wait(30) == 0


def test_a_second_daemon_on_the_same_state_dir_exits_and_changes_nothing(dropd):
    dropd.add_feed_partner("northfield", [students_feed(schedule=[])])
    dropd.start()
    socket_inode = os.stat(dropd.state_dir / "control.sock").st_ino
    second = dropd.cli("run", check=False, timeout=30)
    assert second.returncode == 1
    assert f"dropd is already running (pid {dropd.process.pid})" in second.stderr
    assert os.stat(dropd.state_dir / "control.sock").st_ino == socket_inode
    [run] = json.loads(dropd.cli("run-now", "students", "--json").stdout)
    assert run["status"] == "skipped"
    transport, sftp = dropd.paramiko_sftp("northfield")
    with transport:
        assert sftp.listdir("/") == ["imports"]


@pytest.mark.parametrize("protocol", ["sftp", "ftp"])
def test_a_taken_listen_address_is_named(dropd, protocol):
    """FTP too: pyftpdlib wraps the bind error in another (no strerror of its own): it read "None"."""
    dropd.add_partner("northfield")
    port = getattr(dropd, f"{protocol}_port")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        dropd.write_config()
        result = dropd.cli("run", check=False, timeout=30)
    assert result.returncode == 1
    expected = f"cannot listen for {protocol.upper()} on 127.0.0.1:{port} ({protocol}.listen): Address already in use"
    assert expected in result.stderr, result.stderr


def test_dropd_status_says_what_the_daemon_is_doing(dropd):
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    dropd.upload(
        "northfield", "/imports/StudentData_s.csv", b"Student ID,First Name,Last Name,Cell\n1,A,B,202-555-0101\n"
    )
    dropd.wait_for_runs("students")
    transport, _ = dropd.paramiko_sftp("northfield")
    with transport:
        status = json.loads(dropd.cli("status", "--json").stdout)
        text = dropd.cli("status").stdout
    assert status["healthy"] and status["pid"] == dropd.process.pid
    assert status["sessions"] == {"sftp": 1} and status["unauthenticated"] == 0
    assert [listener["protocol"] for listener in status["listeners"]] == ["sftp", "ftp"]
    assert [(run["feed"], run["status"]) for run in status["last_runs"]] == [("students", "success")]
    assert text.startswith("dropd running (pid ") and "last run of students: success at " in text
    assert f"sftp  127.0.0.1:{dropd.sftp_port}" in text
    dropd.stop()
    stopped = dropd.cli("status", check=False)
    assert stopped.returncode == 1 and "dropd is not running" in stopped.stderr


def test_read_only_commands_answer_when_an_unrelated_partner_file_is_broken(dropd):
    dropd.add_feed_partner("northfield", [students_feed(schedule=[])])
    dropd.add_partner("eastgate")
    dropd.start()
    (dropd.partners_dir / "eastgate.toml").write_text("[partner\n")
    runs = dropd.cli("runs")
    assert runs.returncode == 0 and "no runs" in runs.stdout
    assert "eastgate.toml" in runs.stderr and "warning" in runs.stderr and "left out" in runs.stderr
    contacts = dropd.cli("contacts", "--partner", "northfield")
    assert contacts.returncode == 0 and "0 contacts" in contacts.stdout
    assert dropd.cli("check-config", check=False).returncode == 1
