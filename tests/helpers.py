"""What the tests share: the real daemon run on free loopback ports, the clients that talk to
it, and the feed definitions several test modules use. Fixtures are in conftest.py."""

import base64
import ftplib
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko

PASSWORD = "correct horse battery"
START_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(size: int = 20) -> tuple[int, int]:
    """A run of ports that are free right now (for FTP passive mode)."""
    for _ in range(50):
        start = free_port()
        if start + size > 65535:
            continue
        sockets = []
        try:
            for port in range(start, start + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return start, start + size - 1
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free port range")


def peak_rss_kib(pid: int) -> int:
    """A process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for process {pid}")


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items()) + " }"
    return json.dumps(str(value))


def toml_table(name: str, values: dict) -> str:
    lines = [f"[{name}]"] + [f"{key} = {toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class ClientKey:
    """An ed25519 key pair made with ssh-keygen, usable by OpenSSH and paramiko."""

    def __init__(self, directory: Path, name: str = "id_ed25519"):
        self.path = directory / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(self.path)], check=True)
        self.public = (directory / f"{name}.pub").read_text().strip()
        self.pkey = paramiko.Ed25519Key.from_private_key_file(str(self.path))


class DropdProcess:
    """The daemon as a child process, with its JSON log lines readable as dicts."""

    def __init__(self, root: Path, password_hash: str):
        self.root = root
        self.password_hash = password_hash
        self.config_dir = root / "etc"
        self.partners_dir = self.config_dir / "partners.d"
        self.partners_dir.mkdir(parents=True)
        self.state_dir = root / "state"
        self.drop_root = root / "drop"
        self.sftp_port = free_port()
        self.ftp_port = free_port()
        self.passive = free_port_range()
        self.log_path = root / "dropd.log"
        self.process: subprocess.Popen | None = None
        self.settings = {
            "daemon": {
                "state_dir": str(self.state_dir),
                "drop_root": str(self.drop_root),
                "partners_dir": "partners.d",
                "timezone": "America/New_York",
                "grace_time": "10s",
            },
            "sftp": {"listen": f"127.0.0.1:{self.sftp_port}", "host_keys": [str(self.state_dir / "host_ed25519")]},
            "ftp": {
                "listen": f"127.0.0.1:{self.ftp_port}",
                "tls": "required",
                "certfile": str(self.state_dir / "tls.pem"),
                "keyfile": str(self.state_dir / "tls.key"),
                "self_signed": True,
                "passive_ports": f"{self.passive[0]}-{self.passive[1]}",
            },
            "security": {"max_failures": 5, "window": "10m", "ban": "30m"},
        }

    @property
    def config_file(self) -> Path:
        return self.config_dir / "dropd.toml"

    def write_config(self) -> None:
        text = "".join(toml_table(name, values) for name, values in self.settings.items())
        self.config_file.write_text(text)

    def add_partner(self, name: str, password: bool = True, keys=(), **fields) -> None:
        partner = {"name": name, "enabled": True}
        if password:
            partner["password_hash"] = self.password_hash
        if keys:
            partner["authorized_keys"] = list(keys)
        partner.update(fields)
        (self.partners_dir / f"{name}.toml").write_text(toml_table("partner", partner))

    def home(self, partner: str) -> Path:
        return self.drop_root / partner

    def add_feed_partner(self, name: str, feeds: list[dict], **fields) -> None:
        """A password partner with feeds; each feed dict may hold sub-tables (dicts) and lists of tables."""
        partner = {"name": name, "enabled": True, "password_hash": self.password_hash, **fields}
        text = toml_table("partner", partner)
        for feed in feeds:
            plain = {
                k: v
                for k, v in feed.items()
                if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))
            }
            text += "\n[[feed]]\n" + toml_table("x", plain).split("\n", 1)[1]
            for key, value in feed.items():
                if isinstance(value, dict):
                    text += toml_table(f"feed.{key}", value)
                elif isinstance(value, list) and value and isinstance(value[0], dict):
                    for item in value:
                        text += f"[[feed.{key}]]\n" + toml_table("x", item).split("\n", 1)[1]
        (self.partners_dir / f"{name}.toml").write_text(text)

    def cli(self, *args, check=True, timeout=120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "daemon.cli", *args, "-c", str(self.config_file)],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"dropd {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def runs(self, *args) -> list[dict]:
        return json.loads(self.cli("runs", "--json", *args).stdout)

    def contacts(self, partner: str) -> dict[str, dict]:
        found = json.loads(self.cli("contacts", "--partner", partner, "--json").stdout)
        return {contact["contact_id"]: contact for contact in found}

    def wait_for_runs(self, feed: str, count: int = 1, timeout: float = 30) -> list[dict]:
        """The feed's finished runs, oldest first, once there are at least `count`."""
        deadline = time.monotonic() + timeout
        while True:
            finished = [run for run in self.runs("--feed", feed) if run["status"] != "running"]
            if len(finished) >= count:
                return list(reversed(finished))
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(finished)} of {count} runs of {feed} within {timeout}s:\n{self.log_text()}")
            time.sleep(0.1)

    def upload(self, partner: str, path: str, content: bytes, password: str = PASSWORD) -> None:
        transport, sftp = self.paramiko_sftp(partner, password)
        with transport:
            folder = path.rsplit("/", 1)[0] or "/"
            try:
                sftp.stat(folder)
            except FileNotFoundError:
                sftp.mkdir(folder)
            with sftp.open(path, "wb") as handle:
                handle.write(content)

    def start(self, extra_env=None, drop_root_tmpfs: str | None = None, prefix: tuple = ()) -> None:
        """Start the daemon; with `drop_root_tmpfs` (a size such as "4m") the drop root is a
        tmpfs of that size in the daemon's own mount namespace (see `inside`); `prefix` runs it
        under another command (`prlimit --nofile=...`)."""
        self.write_config()
        env = dict(os.environ)
        env.update(extra_env or {})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (the daemon's log, closed in stop())
        command = [sys.executable, "-m", "daemon.cli", "run", "-c", str(self.config_file)]
        if drop_root_tmpfs:
            self.drop_root.mkdir(parents=True, exist_ok=True)
            mount = f'mount -t tmpfs -o size={drop_root_tmpfs},mode=0755 tmpfs "{self.drop_root}" && exec "$@"'
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, "sh", *command]
        self.process = subprocess.Popen([*prefix, *command], stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.namespaced = bool(drop_root_tmpfs)
        self.wait_for("daemon.started", timeout=START_TIMEOUT)

    def inside(self, path: Path) -> Path:
        """`path` as the daemon sees it (through /proc/PID/root when it has its own mounts)."""
        if getattr(self, "namespaced", False):
            return Path(f"/proc/{self.process.pid}/root") / Path(path).relative_to("/")
        return Path(path)

    def events(self) -> list[dict]:
        result = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                result.append(json.loads(line))
            except json.JSONDecodeError:
                result.append({"event": "unparsed", "line": line})
        return result

    def find(self, event: str, **fields) -> list[dict]:
        return [e for e in self.events() if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]

    def wait_for(self, event: str, timeout: float = 15, count: int = 1, **fields) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(event, **fields)
            if len(found) >= count:
                return found
            if self.process and self.process.poll() is not None:
                raise AssertionError(
                    f"dropd exited ({self.process.returncode}) waiting for {event}:\n{self.log_text()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no {event} {fields} within {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def signal(self, signum) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
                    raise AssertionError(f"dropd did not stop on SIGTERM:\n{self.log_text()}") from None
            return self.process.returncode
        finally:
            self._log.close()

    # Clients -----------------------------------------------------------------------------

    def paramiko_sftp(self, user: str, password: str | None = PASSWORD, key=None, source: str = "127.0.0.1"):
        sock = socket.create_connection(("127.0.0.1", self.sftp_port), timeout=10, source_address=(source, 0))
        transport = paramiko.Transport(sock)
        try:
            transport.connect(username=user, password=None if key else password, pkey=key)
            return transport, paramiko.SFTPClient.from_transport(transport)
        except BaseException:
            transport.close()
            sock.close()
            raise

    def openssh_sftp(self, user: str, key: ClientKey, batch: str, source: str = "127.0.0.1", timeout: float = 60):
        command = [
            "sftp", "-q", "-b", "-", "-P", str(self.sftp_port), "-i", str(key.path),
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.root / 'known_hosts'}",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"BindAddress={source}",
            f"{user}@127.0.0.1",
        ]  # fmt: skip
        return subprocess.run(command, input=batch, capture_output=True, text=True, timeout=timeout)

    def lftp(self, user: str, script: str, password: str = PASSWORD, timeout: float = 60):
        settings = (
            "set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
            "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit true; "
        )
        command = [
            "lftp",
            "-u",
            f"{user},{password}",
            "-p",
            str(self.ftp_port),
            "-e",
            settings + script + "; bye",
            "ftp://127.0.0.1",
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def curl(self, *args, timeout: float = 60):
        return subprocess.run(
            ["curl", "-sS", "--max-time", "30", *args], capture_output=True, text=True, timeout=timeout
        )

    def curl_ftps(self, path: str, *args, user: str, password: str = PASSWORD):
        return self.curl(
            "--ssl-reqd", "--insecure", "--user", f"{user}:{password}", *args,
            f"ftp://127.0.0.1:{self.ftp_port}{path}",
        )  # fmt: skip


CONTACTS_HEADER = "Student ID,First Name,Last Name,Cell,Email,CRM,Text Opt Out,Major"
"""The header of the contacts files `students_feed` reads."""


def students_feed(**overrides) -> dict:
    feed = {
        "name": "students",
        "kind": "contacts",
        "path": "/imports",
        "prefix": "StudentData",
        "files": "all",
        "schedule": ["on_arrival"],
        "columns": {
            "contact_id": "Student ID",
            "first_name": "First Name",
            "last_name": "Last Name",
            "mobile_number": "Cell",
            "email": "Email",
            "crm_id": "CRM",
        },
        "opt_out": {"column": "Text Opt Out", "opted_in": ["N", "No"], "opted_out": ["Y", "Yes"], "empty": "keep"},
        "custom": [{"field": "Major", "column": "Major", "mergeable": True, "visible": True}],
    }
    feed.update(overrides)
    return feed


def ftps(dropd, user="northfield", password=PASSWORD, source="127.0.0.1") -> ftplib.FTP_TLS:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = ftplib.FTP_TLS(context=context, timeout=15, source_address=(source, 0))
    try:
        client.connect("127.0.0.1", dropd.ftp_port)
        client.login(user, password)
        client.prot_p()
    except BaseException:
        client.close()
        raise
    return client


ROW = "{id},Name{id},Last,202-555-01{id:02d},,,,\n"


def place(dropd, name: str, ids, age: float = 120, partner="northfield") -> None:
    """Write a file straight into the landing folder, as the organisation's own job would."""
    folder = dropd.home(partner) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(CONTACTS_HEADER + "\n" + "".join(ROW.format(id=i) for i in ids))
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def start_with(dropd, quiet="1s", **feed):
    dropd.settings["daemon"]["quiet_period"] = quiet
    dropd.add_feed_partner("northfield", [students_feed(schedule=[], **feed)])
    dropd.start()


def run_now(dropd, *extra, partner="northfield", folder="imports", prefix="StudentData") -> list[dict]:
    """`dropd run-now students` once every feed file in the landing folder has settled (arrived)."""
    for path in sorted((dropd.home(partner) / folder).glob(f"{prefix}*")):
        if path.is_file():
            dropd.wait_for("file.arrived", path=str(path))
    return json.loads(dropd.cli("run-now", "students", "--json", *extra, check=False).stdout)


class InProcessFeeds(DropdProcess):
    """The feed half in this process, for the feed kinds' tests: the config is written as for
    the daemon; `upload` puts the file in the partner's folder and runs its `on_arrival`
    feeds at once, here; runs and contacts are read from the store. `cli` still runs the real
    command on the same state (listings, `ingest`)."""

    def __init__(self, root: Path, password_hash: str):
        super().__init__(root, password_hash)
        self.store = None

    def use_postgresql(self, server: "PostgresServer") -> None:
        """Keep the store in a fresh database of `server` instead of SQLite."""
        self.settings["daemon"]["store"] = server.database()
        self.settings["daemon"]["store_password_file"] = str(server.password_file)

    def start(self, extra_env=None, drop_root_tmpfs=None, prefix=()) -> None:
        from daemon.config.settings import load_config
        from daemon.store import open_store

        self.write_config()
        self.config = load_config(self.config_file)
        self.store = open_store(self.config)

    def upload(self, partner: str, path: str, content: bytes, password: str = PASSWORD) -> None:
        from daemon.feeds import landing
        from daemon.feeds.runs import run_feed

        target = self.home(partner) / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        for owner, feed in landing.feeds_for(self.config, target):
            if "on_arrival" in feed.schedule:
                run_feed(self.context(), owner, feed, "arrival")

    def context(self):
        """What the daemon's runs get: the store, the config, and recaps queued in each run."""
        from daemon.notify.mailer import Mailer
        from daemon.runs.lifecycle import RunContext

        return RunContext(self.store, self.config, notify=Mailer(lambda: self.config).queue_recap)

    def export(self, feed_name: str, trigger: str = "run-now", block_end=None, sleep=None) -> dict:
        """One export run of `feed_name`, here; its run record."""
        from daemon.exports.runs import run_export

        partner, feed = self.config.feed(feed_name)
        options = {"sleep": sleep} if sleep is not None else {}
        return run_export(self.context(), partner, feed, trigger, block_end, **options).as_dict()

    def deliver_mail(self) -> int:
        """One pass of the outbox sender, as the daemon's would make; returns how many were sent."""
        from daemon.notify.mailer import smtp_server
        from daemon.notify.sender import MailSender

        smtp = self.config.smtp
        return MailSender(self.store, lambda: smtp_server(smtp), lambda: smtp.sender, lambda: smtp.retry).deliver_due()

    def runs(self, *args) -> list[dict]:
        options = dict(zip(args[::2], args[1::2], strict=True))
        with self.store.reading() as tx:
            found = tx.runs.recent(feed=options.get("--feed"), status=options.get("--status"))
        return [record.as_dict() for record in found]

    def contacts(self, partner: str) -> dict[str, dict]:
        with self.store.reading() as tx:
            return {contact["contact_id"]: contact for contact in tx.contacts.listing(partner)}

    def wait_for_runs(self, feed: str, count: int = 1, timeout: float = 0) -> list[dict]:
        """The feed's finished runs, oldest first; runs here finish before `upload` returns."""
        finished = [run for run in self.runs("--feed", feed) if run["status"] != "running"]
        assert len(finished) >= count, f"{len(finished)} of {count} runs of {feed}"
        return list(reversed(finished))

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()
        self.store = None


def self_signed_certificate(directory: Path, name: str = "smtp") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (it is its own CA), and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port that writes what it accepts to a
    Maildir, read back with the `email` package. `security` is None (plain), "starttls" (STARTTLS
    required) or "ssl" (TLS from the first byte); `login` = (user, password) requires AUTH;
    addresses in `refuse` get a permanent 550 at RCPT."""

    def __init__(self, directory: Path, security: str | None = None, login=None, refuse=()):
        directory.mkdir(parents=True, exist_ok=True)
        self.maildir = directory / "Maildir"
        self.security = security
        self.login = login
        self.refuse = set(refuse)
        self.port = free_port()
        self.cert, self.key = self_signed_certificate(directory)
        self.controller = None
        self.arrivals = itertools.count(1)  # across restarts of the server

    def start(self) -> "SmtpSink":
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox
        from aiosmtpd.smtp import AuthResult, LoginPassword

        refuse = self.refuse

        arrivals = self.arrivals

        class Handler(Mailbox):
            def handle_message(self, message):
                message["X-Arrival"] = str(next(arrivals))  # the order the server took them in
                super().handle_message(message)

            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                if address in refuse:
                    return "550 5.1.1 no such mailbox here"
                envelope.rcpt_tos.append(address)
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            login = self.login
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                login[0].encode(),
                login[1].encode(),
            )
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 235 or 535

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        options = {}
        if self.security == "ssl":
            options["ssl_context"] = context
        elif self.security == "starttls":
            options.update(tls_context=context, require_starttls=True)
        if self.login:
            # aiosmtpd offers AUTH only after STARTTLS (it does not count implicit TLS as TLS).
            assert self.security != "ssl", "the test server offers AUTH with STARTTLS only"
            options.update(authenticator=authenticator, auth_required=True)
        self.controller = Controller(Handler(self.maildir), hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def settings(self, **extra) -> dict:
        """The [smtp] table for a dropd that sends here."""
        table = {
            "host": "127.0.0.1",
            "port": self.port,
            "security": self.security or "none",
            "from": "dropd@example.org",
            "admin": ["ops@example.org"],
            "timeout": "5s",
            "retry": "1s",
        }
        if self.security:
            table["ca_file"] = str(self.cert)
        if self.login:
            table["username"] = self.login[0]
            table["password_file"] = str(self.maildir.parent / "smtp-password")
            (self.maildir.parent / "smtp-password").write_text(self.login[1] + "\n")
        table.update(extra)
        return table

    def messages(self) -> list:
        """Every message received, oldest first, as `email.message.EmailMessage`."""
        import email
        import email.policy
        import mailbox

        if not self.maildir.exists():
            return []
        box = mailbox.Maildir(self.maildir, create=False)
        found = [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.iterkeys()]
        return sorted(found, key=lambda message: int(message["X-Arrival"]))

    def wait_for(self, count: int, timeout: float = 20) -> list:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


MESSAGES_HEADER = "contact_id,channel,timestamp,incoming,outgoing,outgoing_source,campaign_id,campaign_name,script_id,script_name,media,message_id"


def messages_feed(**overrides) -> dict:
    """A messages feed (the organisation's message log) on /log."""
    return {"name": "log", "kind": "messages", "path": "/log", "prefix": "messages", "files": "all",
            "schedule": ["on_arrival"], **overrides}  # fmt: skip


def conversations_feed(**overrides) -> dict:
    return {"name": "conversations", "kind": "conversations_export", "prefix": "conversations",
            "schedule": ["00-03"], **overrides}  # fmt: skip


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class LocalAccount:
    """A throw-away local user (the destination servers log in real accounts); root only."""

    def __init__(self, home: Path):
        import secrets as random

        if os.geteuid() != 0:
            import pytest

            pytest.skip("the destination servers need a local account: run the tests as root (CI does)")
        self.name = f"dropdt{random.token_hex(3)}"
        self.password = random.token_urlsafe(12)
        self.home = home
        home.mkdir(parents=True)
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", self.name], check=True, capture_output=True)
        subprocess.run(["chpasswd"], input=f"{self.name}:{self.password}\n", text=True, check=True)
        shutil.chown(home, self.name)

    def owns(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, self.name)
        return path

    def remove(self) -> None:
        subprocess.run(["userdel", self.name], capture_output=True)


def open_folder(name: str) -> Path:
    """A folder other local accounts can reach (pytest's own temporary folders are root's alone)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f"dropd-{name}-"))
    folder.chmod(0o755)
    return folder


class SshDestination:
    """OpenSSH's sshd on a free loopback port with its own config and host key: a partner's
    SFTP server (internal-sftp), password and key logins for a local account. With `disk`
    (a size such as "256k"), the upload folder is a tmpfs of that size in sshd's own mount
    namespace."""

    def __init__(self, disk: str | None = None):
        self.root = root = open_folder("sshd")
        self.account = LocalAccount(root / "home")
        self.incoming = self.account.owns(root / "home" / "incoming")
        self.readonly = root / "home" / "readonly"
        self.readonly.mkdir()
        self.disk = disk
        self.port = free_port()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")], check=True)
        listed = subprocess.run(
            ["ssh-keygen", "-lf", str(root / "host_key.pub")], capture_output=True, text=True, check=True
        )
        self.fingerprint = listed.stdout.split()[1]
        self.passphrase = "open sesame"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", self.passphrase, "-f", str(root / "client_key")], check=True
        )
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        (root / "password").write_text(self.account.password + "\n")
        (root / "passphrase").write_text(self.passphrase + "\n")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
            f"UsePAM no\nStrictModes no\nPidFile {root / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
            f"ForceCommand internal-sftp\nAllowUsers {self.account.name}\nLogLevel VERBOSE\n"
        )
        self.process = None
        self.log = root / "sshd.log"

    def start(self) -> "SshDestination":
        Path("/run/sshd").mkdir(exist_ok=True)
        command = ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.root / "sshd_config")]
        if self.disk:
            script = (
                f"mount -t tmpfs -o size={self.disk} tmpfs {self.incoming} && chown {self.account.name} {self.incoming}"
                f" && exec {' '.join(command)}"
            )
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        self.stop()
        self.account.remove()
        shutil.rmtree(self.root, ignore_errors=True)

    def inside(self, path: Path) -> Path:
        """`path` as sshd sees it (its tmpfs lives in its own mount namespace)."""
        if self.disk and self.process is not None:
            return Path(f"/proc/{self.process.pid}/root") / path.relative_to("/")
        return path

    def destination(self, key: bool = False, **extra) -> dict:
        """A [feed.destination] table for this server."""
        table = {"protocol": "sftp", "host": "127.0.0.1", "port": self.port, "username": self.account.name,
                 "directory": str(self.incoming), "host_key": self.fingerprint, "timeout": "5s", "retry": "1s"}  # fmt: skip
        if key:
            table.update(private_key_file=str(self.root / "client_key"), passphrase_file=str(self.root / "passphrase"))
        else:
            table["password_file"] = str(self.root / "password")
        table.update(extra)
        return table


class FtpsDestination:
    """vsftpd with explicit TLS on free loopback ports: a partner's FTPS server. It requires
    data connections to resume the control connection's TLS session (its default)."""

    def __init__(self):
        self.root = root = open_folder("vsftpd")
        self.account = LocalAccount(root / "home")
        self.incoming = self.account.owns(root / "home" / "incoming")
        self.cert, self.key = self_signed_certificate(root, "vsftpd")
        (root / "password").write_text(self.account.password + "\n")
        self.port = free_port()
        low, high = free_port_range(10)
        os.makedirs("/var/run/vsftpd/empty", exist_ok=True)
        (root / "vsftpd.conf").write_text(
            f"listen=YES\nlisten_address=127.0.0.1\nlisten_port={self.port}\nbackground=NO\nanonymous_enable=NO\n"
            "local_enable=YES\nwrite_enable=YES\npam_service_name=vsftpd\nseccomp_sandbox=NO\nssl_enable=YES\n"
            "force_local_logins_ssl=YES\nforce_local_data_ssl=YES\nrequire_ssl_reuse=YES\n"
            f"rsa_cert_file={self.cert}\nrsa_private_key_file={self.key}\npasv_enable=YES\n"
            f"pasv_min_port={low}\npasv_max_port={high}\nvsftpd_log_file={root / 'vsftpd.log'}\n"
        )
        self.process = None

    def start(self) -> "FtpsDestination":
        self.process = subprocess.Popen(
            ["/usr/sbin/vsftpd", str(self.root / "vsftpd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)
        return self

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        self.account.remove()
        shutil.rmtree(self.root, ignore_errors=True)

    def destination(self, **extra) -> dict:
        table = {"protocol": "ftps", "host": "127.0.0.1", "port": self.port, "username": self.account.name,
                 "password_file": str(self.root / "password"), "directory": str(self.incoming),
                 "ca_file": str(self.cert), "timeout": "5s", "retry": "1s"}  # fmt: skip
        table.update(extra)
        return table


class PostgresServer:
    """A real PostgreSQL (the distribution's package) in a temporary folder, on a free loopback
    port, run by the unprivileged `postgres` account when the tests run as root. Password logins
    over TCP (scram-sha-256); each test gets a fresh database from `database()`."""

    def __init__(self):
        import glob

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            import pytest

            pytest.skip("PostgreSQL is not installed (the postgresql package; .ci/run installs it)")
        self.bin = Path(found[-1]).parent
        self.root = open_folder("postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self.password = "dropd-test-password"
        self.password_file = self.root / "password"
        self.password_file.write_text(self.password + "\n")
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(self.root, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-sync",
                  "--auth-local=trust", "--auth-host=scram-sha-256")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self.options = options
        self.resume()
        self.sql(f"CREATE ROLE dropd LOGIN CREATEDB PASSWORD '{self.password}'")
        self._databases = 0

    def _run(self, *command: str) -> str:
        result = subprocess.run([*self.as_owner, *command], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"{command[0]} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", str(self.root), "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-qAtc", statement)  # fmt: skip

    def database(self) -> str:
        """The URL of a new, empty database owned by the `dropd` role (no password in it)."""
        self._databases += 1
        name = f"dropd_{os.getpid()}_{self._databases}"
        self.sql(f"CREATE DATABASE {name} OWNER dropd")
        return f"postgresql://dropd@127.0.0.1:{self.port}/{name}"

    def pause(self, mode: str = "fast") -> None:
        """Stop the server (`pg_ctl stop -m fast` or `immediate`), keeping its data."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def resume(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", self.options, "-l", str(self.root / "log"), "-w",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        subprocess.run([*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


class StallingSshServer:
    """A partner's SFTP server that stops answering at one point (`stall`): "banner" (accepts
    TCP, sends nothing), "auth" (the key exchange, then no answer to the login), "sftp" (the
    login, then no answer to the SFTP session) or "write" (the session, then no answer once
    the first file write arrives); or, with "corrupt", answers everything but keeps every file
    with its first byte changed (in `files`), the size right. paramiko in this process, on a
    free loopback port; any password logs in."""

    def __init__(self, stall: str, directory: Path):
        self.stall = stall
        self.directory = directory
        self.port = free_port()
        self.host_key = paramiko.Ed25519Key.from_private_key_file(str(ClientKey(directory, "stalling_host").path))
        self.fingerprint = "SHA256:" + base64.b64encode(
            hashlib.sha256(self.host_key.asbytes()).digest()
        ).decode().rstrip("=")
        (directory / "stalling_password").write_text("any\n")
        self.released = threading.Event()
        self.stalled = threading.Event()
        """Set once a client has reached the point where the server stops answering."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._transports = []
        self._threads = []
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()

    def _accept(self) -> None:
        while not self.released.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            if self.stall == "banner":
                self.stalled.set()
                self._transports.append(connection)
                continue
            transport = paramiko.Transport(connection)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", *self._subsystem())
            transport.start_server(server=self._interface())
            self._transports.append(transport)

    def _interface(self):
        server = self

        class Interface(paramiko.ServerInterface):
            def get_allowed_auths(self, username):
                return "password"

            def check_auth_password(self, username, password):
                if server.stall == "auth":
                    server.stalled.set()
                    server.released.wait()
                return paramiko.AUTH_SUCCESSFUL

            def check_channel_request(self, kind, chanid):
                return paramiko.OPEN_SUCCEEDED

        return Interface()

    def _subsystem(self):
        server = self
        if self.stall == "sftp":

            class Silent(paramiko.SubsystemHandler):
                def start_subsystem(self, name, transport, channel):
                    server.stalled.set()
                    server.released.wait()

            return (Silent,)

        if self.stall == "corrupt":
            return paramiko.SFTPServer, self._corrupting_files()

        class Handle(paramiko.SFTPHandle):
            def write(self, offset, data):
                server.stalled.set()
                server.released.wait()
                return paramiko.SFTP_OK

        class Files(paramiko.SFTPServerInterface):
            def stat(self, path):
                return paramiko.SFTPAttributes.from_stat(os.stat(server.directory))

            def open(self, path, flags, attr):
                return Handle(flags)

        return paramiko.SFTPServer, Files

    def _corrupting_files(self):
        files = self.files = {}

        class Handle(paramiko.SFTPHandle):
            def __init__(self, path, flags):
                super().__init__(flags)
                self.path = path

            def write(self, offset, data):
                content = files.setdefault(self.path, bytearray())
                content[offset : offset + len(data)] = data
                if offset == 0:
                    content[0] ^= 0xFF
                return paramiko.SFTP_OK

            def read(self, offset, length):
                return bytes(files[self.path][offset : offset + length])

            def stat(self):
                attributes = paramiko.SFTPAttributes()
                attributes.st_size = len(files[self.path])
                return attributes

        class Files(paramiko.SFTPServerInterface):
            def open(self, path, flags, attr):
                if flags & os.O_WRONLY or flags & os.O_RDWR:
                    files[path] = bytearray()
                elif path not in files:
                    return paramiko.SFTP_NO_SUCH_FILE
                return Handle(path, flags)

            def stat(self, path):
                if path not in files:
                    return paramiko.SFTP_NO_SUCH_FILE
                attributes = paramiko.SFTPAttributes()
                attributes.st_size = len(files[path])
                return attributes

            def rename(self, old, new):
                files[new] = files.pop(old)
                return paramiko.SFTP_OK

            def remove(self, path):
                files.pop(path, None)
                return paramiko.SFTP_OK

        return Files

    def destination(self, **extra) -> dict:
        table = {"protocol": "sftp", "host": "127.0.0.1", "port": self.port, "username": "dropd",
                 "password_file": str(self.directory / "stalling_password"), "directory": "/incoming",
                 "host_key": self.fingerprint, "timeout": "1s", "retry": "1s"}  # fmt: skip
        table.update(extra)
        return table

    def close(self) -> None:
        self.released.set()
        self._listener.close()
        for transport in self._transports:
            transport.close()
