"""Randomized faults: uploads killed, cut or refused by a full disk at a random byte.

100 uploads per protocol, interleaved with good ones, into a small tmpfs in the daemon's own
mount namespace. Whatever happens, every file the store imported is byte-identical to a file
a client finished, and every finished file is imported exactly once.
"""

import ftplib
import hashlib
import io
import os
import random
import socket
import ssl
import struct
import time

import paramiko
import pytest

from tests.helpers import PASSWORD

ATTEMPTS_PER_PROTOCOL = 100
MODES = ("good", "good", "killed", "cut", "disk")


@pytest.fixture
def faulty(dropd, client_key):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs in a private mount namespace needs root")
    dropd.settings["daemon"]["quiet_period"] = "1s"
    feed = {"name": "list", "kind": "subscribers", "path": "/in", "prefix": "subs", "files": "all",
            "schedule": ["on_arrival"], "after_import": "delete", "count_file": "off"}  # fmt: skip
    dropd.add_feed_partner("northfield", [feed], authorized_keys=[client_key.public])
    dropd.start(drop_root_tmpfs="6m")
    (dropd.inside(dropd.home("northfield")) / "in").mkdir(exist_ok=True)
    return dropd


def subscriber_file(number: int, rng: random.Random) -> bytes:
    rows = rng.randint(1, 6000)
    return ("email\n" + "".join(f"u{number}.{row}@example.org\n" for row in range(rows))).encode()


def abort_socket(sock: socket.socket, reset: bool) -> None:
    """Close as a killed process would (FIN), or with a reset (RST) as a cut connection does."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class DiskFull:
    """Leaves about `free` bytes on the daemon's drop root while active."""

    def __init__(self, dropd, free: int):
        self.path = dropd.inside(dropd.home("northfield")) / "filler"
        self.free = free

    def __enter__(self):
        stats = os.statvfs(self.path.parent)
        size = max(0, stats.f_bavail * stats.f_frsize - self.free)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            chunk = b"\0" * 65536
            while size > 0:
                size -= os.write(descriptor, chunk[: min(size, len(chunk))])
        except OSError:
            pass
        finally:
            os.close(descriptor)

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def sftp_attempt(dropd, key, name: str, content: bytes, mode: str, at: int) -> bool:
    """One SFTP upload; True when the client saw it finish."""
    sock = socket.create_connection(("127.0.0.1", dropd.sftp_port), timeout=20)
    transport = paramiko.Transport(sock)
    try:
        transport.connect(username="northfield", pkey=key.pkey)
        sftp = paramiko.SFTPClient.from_transport(transport)
        handle = sftp.open(f"/in/{name}", "wb")
        if mode in ("killed", "cut"):
            handle.write(content[:at])
            abort_socket(sock, reset=mode == "cut")
            return False
        try:
            handle.write(content)
            handle.close()
        except OSError:
            return False
        return True
    except (paramiko.SSHException, OSError, EOFError):
        return False
    finally:
        transport.close()


def ftps_attempt(dropd, name: str, content: bytes, mode: str, at: int) -> bool:
    """One FTPS upload; True when the client saw it finish (226)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = ftplib.FTP_TLS(context=context, timeout=20)
    try:
        client.connect("127.0.0.1", dropd.ftp_port)
        client.login("northfield", PASSWORD)
        client.prot_p()
        if mode in ("killed", "cut"):
            data = client.transfercmd(f"STOR in/{name}")
            data.sendall(content[:at])
            abort_socket(data, reset=mode == "cut")
            abort_socket(client.sock, reset=mode == "cut")
            return False
        try:
            client.storbinary(f"STOR in/{name}", io.BytesIO(content))
        except ftplib.Error:
            return False
        client.quit()
        return True
    except (OSError, EOFError, ftplib.Error):
        return False
    finally:
        client.close()


def test_random_faults_never_import_a_partial_file_and_import_each_finished_one_once(faulty, client_key):
    dropd = faulty
    rng = random.Random(int(os.environ.get("DROPD_FAULT_SEED", "0")) or None)
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    finished: dict[str, str] = {}
    outcomes: dict[tuple[str, str, bool], int] = {}
    attempts = [(protocol, number) for number in range(ATTEMPTS_PER_PROTOCOL) for protocol in ("sftp", "ftps")]
    for protocol, number in attempts:
        name = f"subs_{protocol}_{number:03d}.csv"
        content = subscriber_file(number * 2 + (protocol == "ftps"), rng)
        mode = rng.choice(MODES)
        at = rng.randrange(1, len(content))
        if mode == "disk":
            with DiskFull(dropd, free=at):
                done = attempt(dropd, client_key, protocol, name, content, mode, at)
        else:
            done = attempt(dropd, client_key, protocol, name, content, mode, at)
        outcomes[protocol, mode, done] = outcomes.get((protocol, mode, done), 0) + 1
        if done:
            finished[hashlib.sha256(content).hexdigest()] = name
    for protocol in ("sftp", "ftps"):
        assert not outcomes.get((protocol, "good", False)), outcomes
        assert outcomes.get((protocol, "disk", False)), f"no {protocol} upload met a full disk: {outcomes}"
    deadline = time.monotonic() + 120
    while True:
        runs = [run for run in dropd.runs("--limit", "1000") if run["status"] != "running"]
        if len(runs) >= len(finished) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(2.5)  # a late duplicate arrival would show now
    runs = dropd.runs("--limit", "1000")
    imported = [run["sha256"] for run in runs if run["status"] == "success"]
    context = f"seed {seed} (DROPD_FAULT_SEED={seed} repeats it); outcomes {outcomes}"
    assert [run for run in runs if run["status"] != "success"] == [], context
    assert sorted(imported) == sorted(finished), context


def attempt(dropd, key, protocol, name, content, mode, at) -> bool:
    if protocol == "sftp":
        return sftp_attempt(dropd, key, name, content, mode, at)
    return ftps_attempt(dropd, name, content, mode, at)
