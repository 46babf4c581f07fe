"""Pushing exports to partners' own servers that are not dropd: OpenSSH's sshd (password, an
encrypted key, a pinned host key) and vsftpd with TLS; and `dropd test-connection`."""

import csv
import os

import pytest

from tests.helpers import (
    CONTACTS_HEADER,
    MESSAGES_HEADER,
    FtpsDestination,
    InProcessFeeds,
    SshDestination,
    conversations_feed,
    messages_feed,
    students_feed,
)


@pytest.fixture
def sshd(tmp_path):
    server = SshDestination()
    yield server.start()
    server.close()


@pytest.fixture
def feeds(tmp_path, password_hash):
    return InProcessFeeds(tmp_path, password_hash)


def start(feeds, destination: dict, **feed):
    feeds.add_feed_partner(
        "northfield", [students_feed(), messages_feed(), conversations_feed(destination=destination, **feed)]
    )
    feeds.start()
    feeds.upload(
        "northfield",
        "/imports/StudentData_1.csv",
        f"{CONTACTS_HEADER}\nS1,Ada,Lovelace,202-555-0143,,CRM-1,,\n".encode(),
    )
    rows = "".join(f"S1,web,2026-11-20T10:00:{n:02d}Z,hello {n},,,,,,,,m{n}\n" for n in range(3))
    feeds.upload("northfield", "/log/messages_1.csv", (MESSAGES_HEADER + "\n" + rows).encode())


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("key", [False, True], ids=["password", "encrypted-key"])
def test_sftp_push_lands_the_file_and_its_count_under_their_real_names(feeds, sshd, key):
    start(feeds, sshd.destination(key=key), count_file="write")
    run = feeds.export("conversations")
    assert run["status"] == "success", run["reason"]
    name = run["file"]
    assert listing(sshd.incoming) == [name, name.removesuffix(".csv") + "_count.txt"]
    with open(sshd.incoming / name, encoding="utf-8", newline="") as handle:
        assert [row["incoming"] for row in csv.DictReader(handle)] == ["hello 0", "hello 1", "hello 2"]
    assert run["details"]["destination"] == f"sftp://{sshd.account.name}@127.0.0.1:{sshd.port}{sshd.incoming}"


def test_a_wrong_host_key_fails_before_any_login(feeds, sshd):
    wrong = "SHA256:" + "A" * 43
    start(feeds, sshd.destination(host_key=wrong))
    run = feeds.export("conversations")
    assert run["status"] == "failed" and run["reason"].startswith("delivery-failed: host-key:")
    assert sshd.fingerprint in run["reason"] and wrong in run["reason"]
    assert listing(sshd.incoming) == []
    log = sshd.log.read_text()
    assert "Accepted" not in log and "Failed password" not in log and "Failed publickey" not in log
    # The watermark did not move: the same messages go out once the key is right.
    feeds.stop()
    feeds.add_feed_partner(
        "northfield", [students_feed(), messages_feed(), conversations_feed(destination=sshd.destination())]
    )
    feeds.start()
    assert feeds.export("conversations")["rows_in_file"] == 3


def test_a_server_down_then_up_inside_the_block_is_retried(feeds, sshd):
    import datetime

    sshd.stop()
    start(feeds, sshd.destination())
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) == 2:
            sshd.start()

    block_end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    run = feeds.export("conversations", "window:00-03", block_end=block_end, sleep=sleep)
    assert run["status"] == "success" and waits == [1.0, 2.0]
    assert len(listing(sshd.incoming)) == 1


def test_a_run_started_by_hand_tries_three_times(feeds, sshd):
    sshd.stop()
    start(feeds, sshd.destination())
    waits = []
    run = feeds.export("conversations", sleep=waits.append)
    assert run["status"] == "failed" and run["reason"].startswith("delivery-failed: tcp: cannot connect")
    assert waits == [1.0, 2.0]


def test_a_directory_that_is_not_writable_fails_at_once(feeds, sshd):
    start(feeds, sshd.destination(directory=str(sshd.readonly)))
    waits = []
    run = feeds.export("conversations", sleep=waits.append)
    assert run["status"] == "failed" and run["reason"].startswith("delivery-failed: permission:") and waits == []
    assert listing(sshd.readonly) == []


def test_a_full_disk_on_the_destination_leaves_nothing_behind(feeds, tmp_path):
    server = SshDestination(disk="64k").start()
    try:
        start(feeds, server.destination())
        big = "".join(
            f"S1,web,2026-11-21T10:{n // 60 % 60:02d}:{n % 60:02d}Z,{'x' * 200},,,,,,,,big{n}\n" for n in range(1000)
        )
        feeds.upload("northfield", "/log/messages_2.csv", (MESSAGES_HEADER + "\n" + big).encode())
        run = feeds.export("conversations", sleep=lambda seconds: None)
        # internal-sftp refuses the write that does not fit; paramiko's pipelined upload does not
        # notice, and the size check after it does.
        assert run["status"] == "failed" and run["reason"].startswith(
            ("delivery-failed: upload:", "delivery-failed: verify:")
        )
        assert listing(server.inside(server.incoming)) == [], "the partial upload was removed"
    finally:
        server.close()


def test_ftps_push_to_vsftpd_with_tls_session_reuse(feeds, tmp_path):
    server = FtpsDestination().start()
    try:
        start(feeds, server.destination(), count_file="write")
        run = feeds.export("conversations")
        assert run["status"] == "success", run["reason"]
        assert listing(server.incoming) == [run["file"], run["file"].removesuffix(".csv") + "_count.txt"]
        assert (server.incoming / run["file"]).read_text().count("hello") == 3
    finally:
        server.close()


def test_ftps_push_refuses_a_certificate_it_cannot_verify(feeds, tmp_path):
    server = FtpsDestination().start()
    try:
        destination = server.destination()
        del destination["ca_file"]
        start(feeds, destination)
        run = feeds.export("conversations")
        assert run["status"] == "failed" and run["reason"].startswith("delivery-failed: tls:")
        assert "CERTIFICATE_VERIFY_FAILED" in run["reason"] and listing(server.incoming) == []
    finally:
        server.close()


def test_connection(feeds, destination) -> tuple[int, str]:
    feeds.add_feed_partner("northfield", [conversations_feed(destination=destination)])
    feeds.write_config()
    result = feeds.cli("test-connection", "conversations", check=False)
    return result.returncode, result.stdout + result.stderr


test_connection.__test__ = False


def test_test_connection_passes_every_step(feeds, sshd):
    code, out = test_connection(feeds, sshd.destination(key=True))
    assert code == 0, out
    for step in ("dns", "tcp", "host-key", "auth", "directory", "permission"):
        assert f"  {step:<10} ok" in out
    assert listing(sshd.incoming) == [], "the probe file was removed"


@pytest.mark.parametrize(
    "change, step, says",
    [
        ({"host_key": "SHA256:" + "B" * 43}, "host-key", "offered the ssh-ed25519 key SHA256:"),
        ({"password_file": "wrong"}, "auth", "refused the login"),
        ({"directory": "/nonexistent/folder"}, "directory", "no such file"),
        ({"directory": "readonly"}, "permission", "cannot write in"),
    ],
)
def test_test_connection_names_the_failing_step(feeds, sshd, tmp_path, change, step, says):
    if change.get("password_file") == "wrong":
        (tmp_path / "wrong").write_text("not the password\n")
        change["password_file"] = str(tmp_path / "wrong")
    if change.get("directory") == "readonly":
        change["directory"] = str(sshd.readonly)
    code, out = test_connection(feeds, sshd.destination(**change))
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert code == 1 and len(failed) == 1 and failed[0].split()[0] == step and says in failed[0], out


@pytest.mark.parametrize("server_kind", ["sftp", "ftps"])
def test_two_pushes_in_one_second_land_side_by_side_on_the_partner_server(feeds, monkeypatch, server_kind):
    """posix-rename (and FTP's rename) replaced a file of the same name: the second export in
    a second overwrote the first on the partner's server."""
    import datetime

    from daemon.exports import runs

    frozen = datetime.datetime(2026, 12, 4, 5, 0, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(runs, "utc_now", lambda: frozen)
    server = (SshDestination if server_kind == "sftp" else FtpsDestination)().start()
    try:
        start(feeds, server.destination(), count_file="write")
        first = feeds.export("conversations")
        feeds.upload(
            "northfield",
            "/log/messages_2.csv",
            (MESSAGES_HEADER + "\nS1,web,2026-11-21T10:00:00Z,again,,,,,,,,m9\n").encode(),
        )
        second = feeds.export("conversations")
        assert (first["file"], second["file"]) == (
            "conversations_20261204T050000Z.csv",
            "conversations_20261204T050000Z_2.csv",
        )
        assert listing(server.incoming) == sorted([first["file"], second["file"], "conversations_20261204T050000Z_count.txt",
                                                   "conversations_20261204T050000Z_2_count.txt"])  # fmt: skip
        assert (server.incoming / second["file"]).read_text().count("again") == 1
        assert (server.incoming / first["file"]).read_text().count("hello") == 3
    finally:
        server.close()


def test_an_encrypted_key_without_its_passphrase_fails_the_push_coded(feeds, sshd):
    """It crashed the run with a TypeError (an internal error) at every try."""
    destination = sshd.destination(key=True)
    del destination["passphrase_file"]
    start(feeds, destination)
    run = feeds.export("conversations", sleep=lambda seconds: None)
    assert run["status"] == "failed"
    assert run["reason"] == (
        f"delivery-failed: auth: {sshd.root / 'client_key'} is encrypted: set passphrase_file to a file holding its "
        "passphrase"
    )
    assert listing(sshd.incoming) == []


@pytest.mark.parametrize("server_kind", ["sftp", "ftps"])
def test_without_a_directory_the_file_lands_in_the_login_directory(feeds, server_kind):
    """Seed 000: "optionally add a Directory". `directory` was required."""
    server = (SshDestination if server_kind == "sftp" else FtpsDestination)().start()
    try:
        destination = server.destination()
        del destination["directory"]
        start(feeds, destination, count_file="write")
        run = feeds.export("conversations")
        assert run["status"] == "success", run["reason"]
        home = server.account.home
        landed = sorted(name for name in os.listdir(home) if name.startswith("conversations_"))
        assert landed == sorted([run["file"], run["file"].replace(".csv", "_count.txt")])
        assert (home / run["file"]).read_text().count("hello") == 3
        code, out = test_connection(feeds, destination)
        assert code == 0 and "directory  ok" in out, out
    finally:
        server.close()
