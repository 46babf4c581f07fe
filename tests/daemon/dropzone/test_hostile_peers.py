"""One hostile or broken peer costs that peer alone: every connection, handle and channel it
can make the daemon hold has a bound, a deadline and a test at the bound (real clients and raw
sockets from other loopback addresses against the daemon as a subprocess)."""

import ftplib
import json
import os
import socket
import ssl
import threading
import time

import paramiko
import pytest

from tests.helpers import PASSWORD, ftps

pytestmark = pytest.mark.slow


def security(dropd, **settings):
    values = {"max_failures": 5, "window": "10m", "ban": "30m"}
    values.update(settings)
    dropd.settings["security"] = values


def status(dropd) -> dict:
    return json.loads(dropd.cli("status", "--json").stdout)


def wait_until(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def read_reply(sock: socket.socket) -> bytes:
    """One FTP reply line (enough for the banner and AUTH's answer)."""
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def tls_garbage(dropd, source: str, payload: bytes) -> None:
    """AUTH TLS, then something that is not a TLS handshake, then close."""
    with socket.create_connection(("127.0.0.1", dropd.ftp_port), timeout=10, source_address=(source, 0)) as sock:
        assert read_reply(sock).startswith(b"220")
        sock.sendall(b"AUTH TLS\r\n")
        assert read_reply(sock).startswith(b"234")
        sock.sendall(payload)
        try:
            sock.recv(1024)
        except OSError:
            pass


def tls_then_garbage(dropd, source: str, version: ssl.TLSVersion) -> None:
    """AUTH TLS and a full handshake, then a record whose MAC cannot be right, then close."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", dropd.ftp_port), timeout=10, source_address=(source, 0)) as sock:
        assert read_reply(sock).startswith(b"220")
        sock.sendall(b"AUTH TLS\r\n")
        assert read_reply(sock).startswith(b"234")
        with context.wrap_socket(sock) as secure, socket.socket(fileno=os.dup(secure.fileno())) as raw:
            raw.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))
            try:
                raw.recv(1024)
            except OSError:
                pass


BAD_RECORDS = [
    os.urandom(64),
    # A TLS record header announcing a handshake, followed by bytes no handshake has.
    b"\x16\x03\x01\x00\x30" + os.urandom(48),
    # An alert record (fatal, bad_record_mac) instead of a ClientHello.
    b"\x15\x03\x03\x00\x02\x02\x14",
]


def test_tls_errors_on_the_control_connection_give_their_slot_back(dropd):
    """pyftpdlib's SSL error path closed the socket without our close: each such connection
    stayed counted as not logged in, and 5 locked its address out of both protocols."""
    security(dropd, max_unauthenticated_per_address=5, max_unauthenticated=10)
    dropd.add_partner("northfield")
    dropd.start()
    for _ in range(4):
        for payload in BAD_RECORDS:
            tls_garbage(dropd, "127.0.0.20", payload)
        tls_then_garbage(dropd, "127.0.0.20", ssl.TLSVersion.TLSv1_2)
        tls_then_garbage(dropd, "127.0.0.20", ssl.TLSVersion.TLSv1_3)
    for n in range(21, 31):  # 10 addresses, one each: the whole pre-login pool, were they kept
        tls_garbage(dropd, f"127.0.0.{n}", BAD_RECORDS[0])
    assert wait_until(lambda: status(dropd)["unauthenticated"] == 0), status(dropd)
    ftps(dropd, "northfield", PASSWORD, source="127.0.0.20").quit()
    transport, _ = dropd.paramiko_sftp("northfield", PASSWORD, source="127.0.0.20")
    transport.close()
    ftps(dropd, "northfield", PASSWORD, source="127.0.0.40").quit()
    assert not dropd.find("connection.close_failed")
    assert not [e for e in dropd.events() if e.get("event") == "unparsed" or "exception" in e]


class IdleCrowd:
    """`each` silent TCP connections from every address in `sources`, reopened as soon as the
    daemon drops one, as an attacker's loop would, until `stop`."""

    def __init__(self, port: int, sources, each: int):
        self.port = port
        self.held = {source: [] for source in sources}
        self.each = each
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self.fill()
        self._thread.start()

    def fill(self) -> None:
        for source, sockets in self.held.items():
            sockets[:] = [sock for sock in sockets if _alive(sock)]
            while len(sockets) < self.each:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=(source, 0))
                except OSError:
                    break
                sock.settimeout(None)  # blocking, so that MSG_DONTWAIT peeks return at once
                sockets.append(sock)

    def _keep(self) -> None:
        while not self._stop.wait(0.1):
            self.fill()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sockets in self.held.values():
            for sock in sockets:
                sock.close()


def _alive(sock: socket.socket) -> bool:
    """False once the server closed it (what it sent, a banner or a 421, is read and dropped)."""
    try:
        while sock.recv(4096, socket.MSG_DONTWAIT):
            pass
    except BlockingIOError:
        return True
    except OSError:
        pass
    sock.close()
    return False


def with_retries(login, tries: int = 3):
    """A real client's few retries: the login's result, or the last error."""
    for attempt in range(tries):
        try:
            return login()
        except (paramiko.SSHException, OSError, EOFError, ftplib.Error):
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


@pytest.mark.serial
def test_idle_connections_from_a_few_addresses_do_not_lock_out_a_partner(dropd):
    """10 addresses x 5 silent connections held the whole pre-login pool: a partner from
    elsewhere was refused on both protocols for as long as they stayed."""
    security(dropd, max_unauthenticated=50, max_unauthenticated_per_address=5, login_grace_time="60s",
             max_failures=3)  # fmt: skip
    dropd.add_partner("northfield")
    dropd.start()
    sources = [f"127.0.0.{n}" for n in range(70, 80)]
    crowds = [IdleCrowd(dropd.sftp_port, sources[:5], 5), IdleCrowd(dropd.ftp_port, sources[5:], 5)]
    try:
        assert wait_until(lambda: status(dropd)["unauthenticated"] == 50), status(dropd)
        for _ in range(4):
            transport, _ = with_retries(lambda: dropd.paramiko_sftp("northfield", PASSWORD, source="127.0.0.81"))
            transport.close()
            with_retries(lambda: ftps(dropd, "northfield", PASSWORD, source="127.0.0.82")).quit()
        # The connections dropped to make room were the crowd's, and they counted against it.
        dropped = dropd.find("connection.closed", reason="pre-login-pool-full")
        assert dropped and {event["remote"] for event in dropped} <= set(sources)
        assert wait_until(lambda: dropd.find("address.banned")), "pressure never counted toward a ban"
        banned = {event["remote"] for event in dropd.find("address.banned")}
        assert banned <= set(sources), banned
        assert status(dropd)["unauthenticated"] <= 50
    finally:
        for crowd in crowds:
            crowd.stop()


@pytest.mark.serial
def test_a_crowd_of_wrong_passwords_from_many_addresses_does_not_make_a_partner_wait(dropd):
    """100 guessers from 100 addresses queued every password check: a partner's login waited
    behind all of them and was refused as busy after 10 s."""
    security(dropd, max_failures=1000, max_unauthenticated=200, login_grace_time="60s")
    dropd.add_partner("northfield")
    dropd.start()
    stop = threading.Event()
    attempts = []

    def guess(source):
        while not stop.is_set():
            try:
                transport = open_transport(dropd, source)
            except (paramiko.SSHException, OSError, EOFError):
                time.sleep(0.2)
                continue
            for _ in range(3):
                attempts.append(try_password(transport, "northfield", "wrong-password"))
            transport.close()

    guessers = [threading.Thread(target=guess, args=(f"127.0.1.{n}",)) for n in range(1, 101)]
    for thread in guessers:
        thread.start()
    try:
        dropd.wait_for("login.failed", count=150, timeout=60)  # every guesser has failed at least once
        started = time.monotonic()
        transport, _ = dropd.paramiko_sftp("northfield", PASSWORD, source="127.0.0.101")
        waited = time.monotonic() - started
        transport.close()
    finally:
        stop.set()
        for thread in guessers:
            thread.join(60)
    assert waited < 5, f"the partner waited {waited:.1f} s behind the crowd"
    assert not dropd.find("login.failed", remote="127.0.0.101")


def open_transport(dropd, source: str) -> paramiko.Transport:
    sock = socket.create_connection(("127.0.0.1", dropd.sftp_port), timeout=10, source_address=(source, 0))
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
    except BaseException:
        transport.close()
        raise
    return transport


def try_password(transport: paramiko.Transport, user: str, password: str) -> str:
    try:
        transport.auth_password(user, password)
        return "ok"
    except paramiko.AuthenticationException:
        return "failed"
    except (paramiko.SSHException, OSError, EOFError):
        return "closed"


def open_files(sftp: paramiko.SFTPClient, names, mode="rb") -> tuple[list, str | None]:
    """Open each name until one is refused: the handles, and the refusal's message."""
    handles = []
    for name in names:
        try:
            handles.append(sftp.open(name, mode))
        except OSError as exc:
            return handles, str(exc)
    return handles, None


def test_one_sftp_session_holds_at_most_max_handles_open(dropd):
    """18,771 handles in 12 s from one session took every descriptor of the daemon."""
    security(dropd, max_handles_per_session=16)
    dropd.add_partner("northfield")
    dropd.start()
    (dropd.home("northfield") / "big.csv").write_text("x\n")
    transport, sftp = dropd.paramiko_sftp("northfield")
    with transport:
        reads, refusal = open_files(sftp, ["/big.csv"] * 40)
        assert len(reads) == 16
        assert refusal == "too many open files in this session (at most 16); close some first"
        reads.pop().close()
        writes, refusal = open_files(sftp, [f"/upload{n}.csv" for n in range(5)], "wb")
        assert len(writes) == 1 and refusal.startswith("too many open files")
        for handle in reads + writes:
            handle.close()
        with sftp.open("/after.csv", "wb") as handle:
            handle.write(b"fine\n")
    assert (dropd.home("northfield") / "after.csv").read_text() == "fine\n"


def test_one_connection_holds_at_most_max_channels_open(dropd):
    """300 channels on one connection were 300 threads."""
    security(dropd, max_channels_per_connection=3)
    dropd.add_partner("northfield")
    dropd.start()
    transport, first = dropd.paramiko_sftp("northfield")
    with transport:
        more = [paramiko.SFTPClient.from_transport(transport) for _ in range(2)]
        with pytest.raises(paramiko.ChannelException) as refused:
            paramiko.SFTPClient.from_transport(transport)
        assert refused.value.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        more.pop().close()
        assert paramiko.SFTPClient.from_transport(transport).listdir("/") == []
    assert dropd.find("sftp.channel_refused", reason="too-many-channels", limit=3)


def test_accept_loops_survive_running_out_of_file_descriptors(dropd):
    """At the descriptor limit the FTP server closed its listener and the control socket its
    accept loop, for good: no more logins, no more `dropd status`, until a restart."""
    security(dropd, max_handles_per_session=1000, max_unauthenticated=200, max_unauthenticated_per_address=200,
             max_sessions_per_address=200)  # fmt: skip
    dropd.add_partner("northfield")
    dropd.start(prefix=("prlimit", "--nofile=96:96"))
    (dropd.home("northfield") / "big.csv").write_text("x\n")
    transport, sftp = dropd.paramiko_sftp("northfield")
    handles, refusal = open_files(sftp, ["/big.csv"] * 200)
    assert refusal is not None and len(handles) < 96
    # Every descriptor is taken: new connections wait in the backlog or are refused for now.
    knocks = []
    for port in (dropd.ftp_port, dropd.sftp_port, dropd.ftp_port):
        try:
            knocks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            pass
    time.sleep(1.5)
    for sock in knocks:
        sock.close()
    for handle in handles:
        handle.close()
    transport.close()
    assert wait_until(lambda: dropd.cli("status", check=False).returncode == 0, timeout=15)
    ftps(dropd, "northfield", PASSWORD).quit()
    transport, _ = dropd.paramiko_sftp("northfield")
    transport.close()
    assert refusal == "Too many open files", "the partner is told why"
    accept_failures = dropd.find("server.accept_failed")
    assert accept_failures and len(accept_failures) <= 6, accept_failures  # rate-limited, not a line per try
    assert not [e for e in dropd.events() if e.get("event") == "unparsed" or "exception" in e]


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_status_requests_leave_no_store_connection_behind(dropd):
    """Each `dropd status` left a SQLite connection (three descriptors) in the daemon: 1,208
    descriptors after 90 minutes of a monitoring check."""
    dropd.add_partner("northfield")
    dropd.start()
    for _ in range(3):
        dropd.cli("status")
    before = open_descriptors(dropd.process.pid)
    for _ in range(40):
        dropd.cli("status", "--json")
    assert open_descriptors(dropd.process.pid) <= before + 2
