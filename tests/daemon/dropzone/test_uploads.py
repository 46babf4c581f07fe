"""Atomic uploads on both protocols: a client killed mid-upload leaves nothing behind."""

import os
import signal
import subprocess
import time

import pytest

from daemon.temp_names import is_our_temp_name
from tests.helpers import PASSWORD


def wait_for_partial_upload(home, minimum=50_000, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in os.listdir(home):
            if is_our_temp_name(name) and (home / name).stat().st_size >= minimum:
                return name
        time.sleep(0.05)
    raise AssertionError(f"no partial upload appeared in {home}: {os.listdir(home)}")


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "StudentData_big.csv"
    path.write_bytes(os.urandom(4 * 1024 * 1024))
    return path


def kill_and_check(dropd, client, partner):
    home = dropd.home(partner)
    wait_for_partial_upload(home)
    assert "StudentData_big.csv" not in os.listdir(home)
    client.send_signal(signal.SIGKILL)
    client.wait(10)
    if client.stdin:
        client.stdin.close()
    dropd.wait_for("transfer.finished", partner=partner, status="aborted")
    assert os.listdir(home) == []
    assert not dropd.find("upload.completed")


def test_openssh_sftp_killed_mid_upload(dropd, client_key, big_file):
    dropd.add_partner("northfield", keys=[client_key.public])
    dropd.start()
    command = [
        "sftp", "-q", "-l", "2000", "-P", str(dropd.sftp_port), "-i", str(client_key.path),
        "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={dropd.root / 'kh'}",
        "-o", "BatchMode=yes", "northfield@127.0.0.1",
    ]  # fmt: skip
    client = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client.stdin.write(f"put {big_file} /StudentData_big.csv\n".encode())
    client.stdin.flush()
    kill_and_check(dropd, client, "northfield")


def test_curl_ftps_killed_mid_upload(dropd, big_file):
    dropd.add_partner("northfield")
    dropd.start()
    client = subprocess.Popen(
        [
            "curl",
            "-sS",
            "--ssl-reqd",
            "--insecure",
            "--limit-rate",
            "200k",
            "--user",
            f"northfield:{PASSWORD}",
            "-T",
            str(big_file),
            f"ftp://127.0.0.1:{dropd.ftp_port}/StudentData_big.csv",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_and_check(dropd, client, "northfield")


def test_lftp_killed_mid_upload(dropd, big_file):
    dropd.add_partner("northfield")
    dropd.start()
    settings = "set ssl:verify-certificate no; set net:limit-rate 200000:200000; "
    client = subprocess.Popen(
        [
            "lftp",
            "-u",
            f"northfield,{PASSWORD}",
            "-p",
            str(dropd.ftp_port),
            "-e",
            settings + f"put {big_file} -o StudentData_big.csv; bye",
            "ftp://127.0.0.1",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_and_check(dropd, client, "northfield")
