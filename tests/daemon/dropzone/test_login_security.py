"""Login security against an attacker's moves, with real clients from several loopback addresses:
bans that hold, no account probing, bounded cost before login, modern algorithms only."""

import ftplib
import json
import socket
import statistics
import subprocess
import threading
import time

import paramiko
import pytest

from daemon.dropzone.passwords import hash_password
from tests.helpers import PASSWORD, ftps, peak_rss_kib

WRONG = "wrong-password-123"


def security(dropd, **settings):
    values = {"max_failures": 5, "window": "10m", "ban": "30m"}
    values.update(settings)
    dropd.settings["security"] = values


def open_transport(dropd, source: str) -> paramiko.Transport:
    """An SSH connection that finished key exchange and has not authenticated."""
    sock = socket.create_connection(("127.0.0.1", dropd.sftp_port), timeout=10, source_address=(source, 0))
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=10)
    return transport


def try_password(transport: paramiko.Transport, user: str, password: str) -> str:
    """ "ok", "failed", or "closed" (the server had closed the connection)."""
    try:
        transport.auth_password(user, password)
        return "ok"
    except paramiko.AuthenticationException:
        return "failed"
    except (paramiko.SSHException, OSError, EOFError):
        return "closed"


def wait_until(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def verified_failures(dropd, remote: str) -> int:
    """Password guesses that were actually checked (not refused as banned)."""
    return len([e for e in dropd.find("login.failed", remote=remote) if e["reason"] != "banned"])


def test_a_good_login_of_another_account_does_not_clear_the_failures(dropd):
    security(dropd, max_failures=3)
    dropd.add_partner("northfield")
    dropd.add_partner("westbrook")
    dropd.start()
    for _ in range(3):
        with pytest.raises(paramiko.AuthenticationException):
            dropd.paramiko_sftp("northfield", WRONG, source="127.0.0.2")
        if not dropd.find("address.banned"):
            transport, _ = dropd.paramiko_sftp("westbrook", PASSWORD, source="127.0.0.2")
            transport.close()
    dropd.wait_for("address.banned", remote="127.0.0.2")
    assert verified_failures(dropd, "127.0.0.2") == 3


def test_connections_opened_before_the_ban_stop_guessing_and_never_log_in(dropd):
    security(dropd, max_failures=5, max_unauthenticated_per_address=20)
    dropd.add_partner("northfield")
    dropd.start()
    waiting = open_transport(dropd, "127.0.0.3")
    guessers = [open_transport(dropd, "127.0.0.3") for _ in range(10)]
    outcomes = [try_password(transport, "northfield", WRONG) for transport in guessers for _ in range(10)]
    assert "ok" not in outcomes
    assert verified_failures(dropd, "127.0.0.3") == 5, "guesses checked after the ban"
    assert wait_until(lambda: not waiting.is_active()), "an unauthenticated connection outlived the ban"
    late = open_transport_or_none(dropd, "127.0.0.3")
    assert late is None
    assert try_password(waiting, "northfield", PASSWORD) != "ok"
    for transport in (waiting, *guessers):
        transport.close()


def open_transport_or_none(dropd, source):
    try:
        return open_transport(dropd, source)
    except (paramiko.SSHException, OSError, EOFError):
        return None


def test_ssh_allows_three_attempts_per_connection(dropd):
    security(dropd, max_failures=100)
    dropd.add_partner("northfield")
    dropd.start()
    transport = open_transport(dropd, "127.0.0.4")
    outcomes = [try_password(transport, "northfield", WRONG) for _ in range(5)]
    assert "ok" not in outcomes and verified_failures(dropd, "127.0.0.4") == 3, outcomes
    assert wait_until(lambda: not transport.is_active())
    transport.close()
    assert dropd.find("connection.closed", remote="127.0.0.4", reason="too-many-attempts")


def test_every_user_name_gets_the_same_answer_and_probes_count(dropd, client_key):
    security(dropd, max_failures=100)
    dropd.add_partner("both", keys=[client_key.public])
    dropd.add_partner("passwordonly")
    dropd.add_partner("keyonly", password=False, keys=[client_key.public])
    dropd.start()
    answers = {}
    for user in ("nobody", "both", "passwordonly", "keyonly"):
        result = subprocess.run(
            ["ssh", "-p", str(dropd.sftp_port), "-o", "PreferredAuthentications=none", "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-o", "BindAddress=127.0.0.5", f"{user}@127.0.0.1", "true"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        answers[user] = result.stderr.strip().rsplit(":", 1)[-1]
    assert set(answers.values()) == {" Permission denied (publickey,password)."}, answers
    probes = dropd.wait_for("login.failed", remote="127.0.0.5", method="none", count=4)
    assert sorted(event["user"] for event in probes) == ["both", "keyonly", "nobody", "passwordonly"]


def test_ftp_key_only_and_unknown_accounts_cost_a_password_check(dropd, client_key):
    security(dropd, max_failures=1000, max_auth_attempts=1)
    dropd.add_partner("withpassword")
    dropd.add_partner("keyonly", password=False, keys=[client_key.public])
    dropd.start()

    def seconds(user):
        started = time.monotonic()
        with pytest.raises(ftplib.error_perm, match="530"):
            ftps(dropd, user, WRONG)
        return time.monotonic() - started

    timings = {
        user: statistics.median(seconds(user) for _ in range(3)) for user in ("withpassword", "keyonly", "nobody")
    }
    # A password check is ~0.1 s of argon2; answering without one would take a few ms.
    assert timings["keyonly"] > 0.6 * timings["withpassword"], timings
    assert timings["nobody"] > 0.6 * timings["withpassword"], timings


@pytest.mark.serial
def test_a_crowd_of_wrong_passwords_neither_exhausts_memory_nor_locks_out_a_partner(dropd):
    security(dropd, max_failures=1000, max_unauthenticated=200, max_unauthenticated_per_address=40,
             max_sessions_per_address=40, login_grace_time="60s")  # fmt: skip
    dropd.add_partner("northfield")
    dropd.start()
    sources = [f"127.0.0.{n}" for n in range(10, 15)]
    results = []

    def guess(source):
        try:
            transport = open_transport(dropd, source)
        except (paramiko.SSHException, OSError, EOFError):
            results.append("refused")
            return
        results.append(try_password(transport, "northfield", WRONG))
        transport.close()

    threads = [threading.Thread(target=guess, args=(sources[n % len(sources)],)) for n in range(100)]
    for thread in threads:
        thread.start()
    dropd.wait_for("login.failed", count=10, timeout=30)  # the crowd is being checked now
    started = time.monotonic()
    transport, _ = dropd.paramiko_sftp("northfield", PASSWORD)
    partner_seconds = time.monotonic() - started
    transport.close()
    for thread in threads:
        thread.join(120)
    assert results.count("failed") == 100, results
    assert partner_seconds < 2.0, f"the partner waited {partner_seconds:.1f} s"
    assert peak_rss_kib(dropd.process.pid) < 400 * 1024


@pytest.mark.serial
def test_unauthenticated_connections_are_limited_and_closed_after_the_grace_time(dropd):
    security(dropd, login_grace_time="2s", max_unauthenticated_per_address=5)
    dropd.add_partner("northfield")
    dropd.start()
    held = [open_transport_or_none(dropd, "127.0.0.6") for _ in range(8)]
    assert sum(transport is not None for transport in held) == 5
    assert (
        len(dropd.find("connection.refused", remote="127.0.0.6", reason="too-many-unauthenticated-from-address")) == 1
    )
    client = ftplib.FTP(timeout=10, source_address=("127.0.0.7", 0))
    client.connect("127.0.0.1", dropd.ftp_port)
    assert wait_until(lambda: not any(t and t.is_active() for t in held), timeout=6)
    with pytest.raises((EOFError, OSError, ftplib.Error)):
        for _ in range(40):
            client.voidcmd("NOOP")
            time.sleep(0.1)
    client.close()
    closed = dropd.find("connection.closed", reason="login-grace-time")
    assert {event["remote"] for event in closed} == {"127.0.0.6", "127.0.0.7"}
    transport, _ = dropd.paramiko_sftp("northfield", PASSWORD, source="127.0.0.6")
    transport.close()


@pytest.mark.parametrize(
    "option",
    # A MAC is negotiated only with a cipher that is not AEAD (chacha20-poly1305, offered first, carries its own).
    [["-c", "3des-cbc"], ["-c", "aes128-cbc"], ["-c", "aes128-ctr", "-o", "MACs=hmac-md5"],
     ["-c", "aes128-ctr", "-o", "MACs=hmac-sha1-96"], ["-c", "aes128-ctr", "-o", "MACs=hmac-sha1"],
     ["-o", "KexAlgorithms=diffie-hellman-group14-sha1"],
     ["-o", "KexAlgorithms=diffie-hellman-group14-sha256"], ["-o", "KexAlgorithms=diffie-hellman-group1-sha1"]],
)  # fmt: skip
def test_weak_ssh_algorithms_are_refused(dropd, client_key, option):
    dropd.add_partner("northfield", keys=[client_key.public])
    dropd.start()
    command = ["ssh", "-p", str(dropd.sftp_port), "-i", str(client_key.path), "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
               "-s", "northfield@127.0.0.1", "sftp"]  # fmt: skip
    refused = subprocess.run(command[:1] + option + command[1:], input="", capture_output=True, text=True, timeout=30)
    assert refused.returncode == 255 and "no matching" in refused.stderr, refused.stderr
    strong = ["-c", "aes256-gcm@openssh.com", "-o", "MACs=hmac-sha2-256-etm@openssh.com"]
    accepted = subprocess.run(command[:1] + strong + command[1:], input="", capture_output=True, text=True, timeout=30)
    assert "no matching" not in accepted.stderr and "Permission denied" not in accepted.stderr, accepted.stderr


def test_ftps_offers_only_aead_suites(dropd):
    dropd.add_partner("northfield")
    dropd.start()

    def handshake(*args):
        return subprocess.run(
            ["openssl", "s_client", "-starttls", "ftp", "-connect", f"127.0.0.1:{dropd.ftp_port}", *args],
            input="", capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    for weak in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"):
        assert handshake("-tls1_2", "-cipher", weak).returncode != 0, weak
    assert handshake("-tls1_1").returncode != 0
    assert handshake("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256").returncode == 0
    assert handshake("-tls1_3").returncode == 0


def test_silent_connections_are_one_rate_limited_line_each(dropd):
    security(dropd, max_unauthenticated_per_address=50)
    dropd.add_partner("northfield")
    dropd.start()
    for number in range(30):
        with socket.create_connection(("127.0.0.1", dropd.sftp_port), source_address=("127.0.0.8", 0)) as sock:
            if number % 2:
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    dropd.wait_for("connection.closed", remote="127.0.0.8")
    time.sleep(1)  # the other 29 would log by now, were they not rate-limited
    lines = [event for event in dropd.events() if event.get("remote") == "127.0.0.8"]
    assert [(event["event"], event["reason"]) for event in lines] == [("connection.closed", "no-banner")]
    assert not dropd.find("unparsed")


def test_bans_are_listed_and_lifted_and_banned_ftp_connections_log_one_line(dropd):
    security(dropd, max_failures=2)
    dropd.add_partner("northfield")
    dropd.start()
    for _ in range(2):
        with pytest.raises(ftplib.error_perm):
            ftps(dropd, "northfield", WRONG, source="127.0.0.9")
    dropd.wait_for("address.banned", remote="127.0.0.9")
    for _ in range(10):
        with pytest.raises(ftplib.error_temp, match="421"):
            ftps(dropd, "northfield", PASSWORD, source="127.0.0.9")
    assert len(dropd.find("connection.refused", remote="127.0.0.9")) == 1
    assert not dropd.find("unparsed")
    [ban] = json.loads(dropd.cli("bans", "--json").stdout)
    assert ban["address"] == "127.0.0.9" and ban["until"] > time.time() + 1700
    assert "127.0.0.9" in dropd.cli("bans").stdout
    dropd.cli("unban", "127.0.0.9")
    assert json.loads(dropd.cli("bans", "--json").stdout) == []
    ftps(dropd, "northfield", PASSWORD, source="127.0.0.9").quit()
    assert dropd.cli("unban", "127.0.0.9", check=False).returncode == 1


def test_two_password_hashes_during_a_rotation_and_key_fingerprints_in_the_log(dropd, client_key):
    new_password = "the new password 2026"
    dropd.add_partner(
        "northfield", keys=[client_key.public], password_hash=[dropd.password_hash, hash_password(new_password)]
    )
    dropd.start()
    for password in (PASSWORD, new_password):
        transport, _ = dropd.paramiko_sftp("northfield", password)
        transport.close()
    transport, _ = dropd.paramiko_sftp("northfield", key=client_key.pkey)
    transport.close()
    [by_key] = dropd.find("login.succeeded", method="publickey")
    assert by_key["key"] == client_key.pkey.fingerprint and by_key["key"].startswith("SHA256:")
    assert len(dropd.find("login.succeeded", method="password")) == 2
