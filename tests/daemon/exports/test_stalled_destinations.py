"""A partner server that stops answering costs its own feed a bounded time, never the daemon:
every network step of a push has a deadline, and imports never wait for exports' run slots."""

import json
import socket
import threading
import time

import pytest

from tests.helpers import (
    CONTACTS_HEADER,
    MESSAGES_HEADER,
    InProcessFeeds,
    StallingSshServer,
    conversations_feed,
    messages_feed,
    students_feed,
)


@pytest.fixture
def feeds(tmp_path, password_hash):
    feeds = InProcessFeeds(tmp_path, password_hash)
    yield feeds
    feeds.stop()


def with_messages(feeds, destination: dict) -> None:
    feeds.add_feed_partner(
        "northfield", [students_feed(), messages_feed(), conversations_feed(destination=destination)]
    )
    feeds.start()
    feeds.upload(
        "northfield", "/imports/StudentData_1.csv", f"{CONTACTS_HEADER}\nS1,Ada,Lovelace,202-555-0143,,C1,,\n".encode()
    )
    rows = "".join(f"S1,web,2026-11-20T10:00:{n:02d}Z,hello {n},,,,,,,,m{n}\n" for n in range(3))
    feeds.upload("northfield", "/log/messages_1.csv", (MESSAGES_HEADER + "\n" + rows).encode())


def export_within(feeds, seconds: float) -> dict:
    """One export (no waits between tries), which must end within `seconds`."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(feeds.export("conversations", sleep=lambda _: None)))
    thread.daemon = True
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the export was still waiting on the server after {seconds} s"
    return outcome


@pytest.mark.parametrize(
    ("stall", "step", "message"),
    [
        ("banner", "tcp", "did not answer within 1 s (SSH handshake)"),
        ("auth", "auth", "did not answer within 1 s (login)"),
        ("sftp", "sftp", "did not answer within 1 s (SFTP session)"),
        ("write", "upload", "did not answer within 1 s (sending"),
    ],
)
def test_an_sftp_server_that_stops_answering_fails_the_push_in_bounded_time(feeds, tmp_path, stall, step, message):
    """A server that accepted the login and then never answered held the run `running` (and
    its run slot) for good; the recovery at the next start did it again."""
    server = StallingSshServer(stall, tmp_path)
    try:
        with_messages(feeds, server.destination(timeout="1s"))
        run = export_within(feeds, 30)
        assert server.stalled.is_set()
    finally:
        server.close()
    assert run["status"] == "failed", run
    assert run["reason"].startswith(f"delivery-failed: {step}: 127.0.0.1:{server.port} "), run["reason"]
    assert message in run["reason"], run["reason"]
    # Nothing was delivered, so the same messages go out with the next run.
    with feeds.store.reading() as tx:
        assert tx.watermarks.position("conversations") == 0


def test_an_ftps_server_that_stops_answering_fails_the_push_in_bounded_time(feeds):
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def greet_then_stall():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.sendall(b"220 welcome\r\n")  # then silence: AUTH TLS is never answered
            held.append(connection)

    threading.Thread(target=greet_then_stall, daemon=True).start()
    port = listener.getsockname()[1]
    password = feeds.root / "ftps_password"
    password.write_text("secret\n")
    destination = {"protocol": "ftps", "host": "127.0.0.1", "port": port, "username": "dropd",
                   "password_file": str(password), "directory": "/in", "timeout": "1s", "retry": "1s"}  # fmt: skip
    try:
        with_messages(feeds, destination)
        run = export_within(feeds, 30)
    finally:
        listener.close()
        for connection in held:
            connection.close()
    assert run["status"] == "failed" and run["reason"].startswith(f"delivery-failed: tls: 127.0.0.1:{port} "), run
    assert "did not answer within 1 s" in run["reason"]


@pytest.mark.slow
def test_imports_run_while_every_export_slot_waits_on_a_stalled_server(dropd, tmp_path):
    """Four export feeds pushing to a server that never answered held all four run slots:
    partners' uploads waited for good."""
    server = StallingSshServer("sftp", tmp_path)
    exports = [conversations_feed(name=f"conversations-{n}", prefix=f"conv{n}", destination=server.destination(
        timeout="60s", retry="60s")) for n in range(6)]  # fmt: skip
    dropd.settings["daemon"]["quiet_period"] = "1s"
    dropd.add_feed_partner("northfield", [students_feed(), messages_feed(), *exports])
    try:
        dropd.start()
        contact = f"{CONTACTS_HEADER}\nS1,Ada,Lovelace,202-555-0143,,,,\n"
        dropd.upload("northfield", "/imports/StudentData_0.csv", contact.encode())
        rows = "".join(f"S1,web,2026-11-20T10:00:{n:02d}Z,hello {n},,,,,,,,m{n}\n" for n in range(3))
        dropd.upload("northfield", "/log/messages_1.csv", (MESSAGES_HEADER + "\n" + rows).encode())
        dropd.wait_for_runs("log")
        dropd.wait_for_runs("students")
        for n in range(6):
            assert dropd.cli("run-now", f"conversations-{n}", "--timeout", "0.1", check=False).returncode == 0
        deadline = time.monotonic() + 30
        while len(json.loads(dropd.cli("status", "--json").stdout)["running"]) < 4:
            assert time.monotonic() < deadline, dropd.cli("status", "--json").stdout
            time.sleep(0.2)
        dropd.upload(
            "northfield",
            "/imports/StudentData_1.csv",
            f"{CONTACTS_HEADER}\nS2,Alan,Turing,202-555-0144,,,,\n".encode(),
        )
        run = dropd.wait_for_runs("students", 2, timeout=20)[-1]
        assert run["status"] == "success"
        running = {entry["feed"] for entry in json.loads(dropd.cli("status", "--json").stdout)["running"]}
        assert len(running) == 4 and all(feed.startswith("conversations-") for feed in running), running
    finally:
        server.close()


def test_a_push_that_arrives_altered_is_caught_by_the_server_s_hash(feeds, tmp_path):
    """Pushes were verified by size only: a file altered on the way (or by the server) with its
    size right was recorded as delivered."""
    server = StallingSshServer("corrupt", tmp_path)
    try:
        with_messages(feeds, server.destination(timeout="5s"))
        run = export_within(feeds, 30)
    finally:
        server.close()
    assert run["status"] == "failed", run
    assert run["reason"].startswith("delivery-failed: verify: conversations_") and "arrived altered" in run["reason"]
    assert server.files == {}, "the altered file was removed"


class _LyingFtps:
    """pyftpdlib with TLS that answers XSHA256 with a hash that is not the file's."""

    def __init__(self, root):
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import TLS_FTPHandler
        from pyftpdlib.servers import FTPServer

        from tests.helpers import self_signed_certificate

        (root / "in").mkdir(parents=True)
        cert, key = self_signed_certificate(root, "lying")
        authorizer = DummyAuthorizer()
        authorizer.add_user("dropd", "secret", str(root / "in"), perm="elradfmw")

        class Handler(TLS_FTPHandler):
            proto_cmds = {**TLS_FTPHandler.proto_cmds,
                          "XSHA256": dict(perm="r", auth=True, arg=True, help="Syntax: XSHA256 <SP> file-name")}  # fmt: skip

            def ftp_XSHA256(self, path):
                self.respond("250 " + "0" * 64)

        Handler.authorizer, Handler.certfile, Handler.keyfile = authorizer, str(cert), str(key)
        Handler.tls_control_required = Handler.tls_data_required = True
        self.cert = cert
        self.server = FTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.address[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        """The loop in steps, closed by its own thread: close_all() from another thread closed
        the poller under a running poll (EBADF in this thread, reported against a later test)."""
        while not self.stopping.is_set():
            self.server.ioloop.loop(timeout=0.1, blocking=False)
        self.server.close_all()

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=10)


def test_an_ftps_push_whose_server_hash_differs_is_not_delivered(feeds, tmp_path):
    server = _LyingFtps(tmp_path / "lying")
    (tmp_path / "secret").write_text("secret\n")
    destination = {"protocol": "ftps", "host": "127.0.0.1", "port": server.port, "username": "dropd",
                   "password_file": str(tmp_path / "secret"), "directory": "/", "ca_file": str(server.cert),
                   "timeout": "5s", "retry": "1s"}  # fmt: skip
    try:
        with_messages(feeds, destination)
        run = export_within(feeds, 30)
    finally:
        server.close()
    assert run["status"] == "failed" and run["reason"].startswith("delivery-failed: verify: conversations_"), run
    assert "the server's SHA-256 of it is not ours" in run["reason"]
    assert list((tmp_path / "lying" / "in").iterdir()) == []
