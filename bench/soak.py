"""Soak: legitimate partners keep working while hostile peers attack without pause.

    python3 bench/soak.py [--minutes 30] [--partners 20]

Starts the daemon (as the tests do, on loopback high ports, as root for the source addresses
127.0.x.y) with `--partners` partners, each uploading a small contacts file every few seconds
over SFTP or FTPS from its own address and checking that it was imported. Meanwhile, each in a
loop of its own:
- TLS garbage and bad-MAC records on FTPS control connections;
- idle TCP connections from ten addresses, reopened as soon as they are dropped;
- wrong passwords from a hundred addresses;
- one SFTP session opening handles without end, one connection opening channels without end;
- a partner account uploading files of 4 MB records;
- export feeds pushing to a server that accepts the login and never answers;
- `dropd status` requests and idle metrics clients.

A partner's upload is tried up to three times, a second apart, as real clients do (rclone's
low-level retries, WinSCP's reconnect): a login may be refused while a flood of strangers that
looks just like partners fills the pre-login pool, until their failures set them apart.

Every 5 s the daemon's resident set, descriptors and threads are sampled. Prints legitimate
uploads attempted and succeeded (imported), the p50/p95 login time, and the first, last and
peak of each sample (flat memory and descriptors: last close to first). Goal: 100 % of
legitimate uploads succeed, p95 login < 2 s, flat memory and descriptors.
"""

import argparse
import ftplib
import logging
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RETRIES = 3
sys.path.insert(0, str(ROOT))

import paramiko  # noqa: E402

from daemon.dropzone.passwords import hash_password  # noqa: E402
from tests.helpers import (  # noqa: E402
    CONTACTS_HEADER,
    MESSAGES_HEADER,
    PASSWORD,
    DropdProcess,
    StallingSshServer,
    conversations_feed,
    free_port,
    messages_feed,
    students_feed,
)


class Soak:
    def __init__(self, root: Path, partners: int):
        self.dropd = DropdProcess(root, hash_password(PASSWORD))
        self.partners = [f"partner{n:02d}" for n in range(partners)]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.attempted = self.succeeded = self.retried = 0
        self.failures: list[str] = []
        self.login_seconds: list[float] = []
        self.samples: list[tuple[float, int, int, int]] = []
        self.attacks: dict[str, int] = {}
        self.stalling = StallingSshServer("sftp", root)
        self.metrics_port = free_port()

    # Set-up ------------------------------------------------------------------------------

    def start(self) -> None:
        d = self.dropd
        d.settings["daemon"]["quiet_period"] = "1s"
        d.settings["metrics"] = {"listen": f"127.0.0.1:{self.metrics_port}"}
        d.settings["security"] = {"max_failures": 5, "window": "10m", "ban": "30m", "login_grace_time": "10s",
                                  "max_handles_per_session": 256, "max_channels_per_connection": 10}  # fmt: skip
        for name in self.partners:
            d.add_feed_partner(name, [students_feed(name=f"{name}-students")])
        exports = [conversations_feed(name=f"stalled-{n}", prefix=f"stalled{n}",
                                      destination=self.stalling.destination(timeout="10s", retry="5s"))
                   for n in range(6)]  # fmt: skip
        d.add_feed_partner("mallory", [students_feed(name="mallory-students"), messages_feed(), *exports])
        d.start()
        rows = "".join(f"S1,web,2026-11-20T10:00:{n:02d}Z,hello {n},,,,,,,,m{n}\n" for n in range(3))
        d.upload("mallory", "/log/messages_1.csv", (MESSAGES_HEADER + "\n" + rows).encode())

    # Legitimate partners -----------------------------------------------------------------

    def partner(self, index: int) -> None:
        name, source = self.partners[index], f"127.0.3.{index + 1}"
        sequence = 0
        while not self.stop.wait(2 + index % 3):
            sequence += 1
            body = f"{CONTACTS_HEADER}\nS{index}-{sequence},Ada,Lovelace,{_phone(index, sequence)},,,,\n".encode()
            path = f"/imports/StudentData_{sequence:05d}.csv"
            with self.lock:
                self.attempted += 1
            for attempt in range(RETRIES):  # as real clients do (rclone: low-level retries)
                try:
                    self._upload(name, source, path, body, sftp=bool(sequence % 2))
                    break
                except Exception as exc:
                    with self.lock:
                        self.retried += 1
                    if attempt == RETRIES - 1:
                        self._failed(f"{name} {path}: {type(exc).__name__}: {exc}")
                    self.stop.wait(1)
            else:
                continue
            if self._imported(name, f"StudentData_{sequence:05d}.csv"):
                with self.lock:
                    self.succeeded += 1
            else:
                self._failed(f"{name} {path}: not imported within 60 s")

    def _upload(self, name: str, source: str, path: str, body: bytes, sftp: bool) -> None:
        started = time.monotonic()
        if sftp:
            transport, client = self.dropd.paramiko_sftp(name, PASSWORD, source=source)
            self._record_login(time.monotonic() - started)
            with transport, client.open(path, "wb") as handle:
                handle.write(body)
        else:
            client = _ftps(self.dropd, name, source)
            self._record_login(time.monotonic() - started)
            try:
                client.storbinary(f"STOR {path}", _Reader(body))
            finally:
                client.close()

    def _imported(self, partner: str, name: str) -> bool:
        archive = self.dropd.home(partner) / "imports" / "archive"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stop.is_set():
            if archive.is_dir() and any(entry.startswith(name.removesuffix(".csv")) for entry in os.listdir(archive)):
                return True
            time.sleep(0.2)
        return self.stop.is_set()

    def _record_login(self, seconds: float) -> None:
        with self.lock:
            self.login_seconds.append(seconds)

    def _failed(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    # Hostile peers -------------------------------------------------------------------------

    def attack(self, name: str, once, pause: float) -> None:
        while not self.stop.is_set():
            try:
                once()
            except Exception:
                pass  # a refusal is the point
            with self.lock:
                self.attacks[name] = self.attacks.get(name, 0) + 1
            self.stop.wait(pause)

    def tls_garbage(self) -> None:
        with socket.create_connection(("127.0.0.1", self.dropd.ftp_port), timeout=5,
                                      source_address=("127.0.4.1", 0)) as sock:  # fmt: skip
            sock.recv(1024)
            sock.sendall(b"AUTH TLS\r\n")
            sock.recv(1024)
            sock.sendall(b"\x16\x03\x01\x00\x30" + os.urandom(48))
            sock.recv(1024)

    def idle_crowd(self) -> None:
        held = []
        for n in range(10):
            port = self.dropd.sftp_port if n % 2 else self.dropd.ftp_port
            for _ in range(5):
                try:
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=2,
                                                         source_address=(f"127.0.5.{n + 1}", 0)))  # fmt: skip
                except OSError:
                    pass
        self.stop.wait(15)
        for sock in held:
            sock.close()

    def wrong_passwords(self, n: int) -> None:
        sock = socket.create_connection(("127.0.0.1", self.dropd.sftp_port), timeout=10,
                                        source_address=(f"127.0.6.{n % 100 + 1}", 0))  # fmt: skip
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=10)
            transport.auth_password(self.partners[n % len(self.partners)], "guess-" + str(n))
        finally:
            transport.close()

    def handles(self) -> None:
        transport, sftp = self.dropd.paramiko_sftp("mallory", PASSWORD, source="127.0.4.2")
        with transport:
            sftp.open("/hog.csv", "wb").close()
            for _ in range(400):
                try:
                    sftp.open("/hog.csv", "rb")
                except OSError:
                    break
            self.stop.wait(5)

    def channels(self) -> None:
        transport, _ = self.dropd.paramiko_sftp("mallory", PASSWORD, source="127.0.4.3")
        with transport:
            for _ in range(50):
                try:
                    paramiko.SFTPClient.from_transport(transport)
                except paramiko.SSHException:
                    break
            self.stop.wait(5)

    def huge_records(self) -> None:
        cell = "n" * 1_000_000
        rows = "".join(f"B{n},{cell},{cell},(202) 555-{n:04d},,,N,{cell}\n" for n in range(8))
        self.dropd.upload("mallory", f"/imports/StudentData_huge_{time.time_ns()}.csv",
                          (CONTACTS_HEADER + "\n" + rows).encode())  # fmt: skip

    def stalled_pushes(self) -> None:
        for n in range(6):
            self.dropd.cli("run-now", f"stalled-{n}", "--timeout", "0.1", check=False)

    def status_requests(self) -> None:
        self.dropd.cli("status", "--json", check=False)

    def idle_metrics(self) -> None:
        held = [socket.create_connection(("127.0.0.1", self.metrics_port), timeout=2) for _ in range(30)]
        self.stop.wait(3)
        for sock in held:
            sock.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            response.read()

    # Measuring -----------------------------------------------------------------------------

    def sample(self) -> None:
        pid = self.dropd.process.pid
        started = time.monotonic()
        while not self.stop.wait(5):
            try:
                rss = _status_kib(pid, "VmRSS")
                fds = len(os.listdir(f"/proc/{pid}/fd"))
                threads = len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
            self.samples.append((time.monotonic() - started, rss, fds, threads))

    def run(self, minutes: float) -> None:
        workers = [threading.Thread(target=self.partner, args=(n,)) for n in range(len(self.partners))]
        attacks = [
            ("tls-garbage", self.tls_garbage, 0.05),
            ("idle-crowd", self.idle_crowd, 0.1),
            ("handles", self.handles, 1),
            ("channels", self.channels, 1),
            ("huge-records", self.huge_records, 20),
            ("stalled-pushes", self.stalled_pushes, 30),
            ("status", self.status_requests, 0.5),
            ("idle-metrics", self.idle_metrics, 1),
        ]
        workers += [threading.Thread(target=self.attack, args=attack) for attack in attacks]
        workers += [
            threading.Thread(target=self.attack, args=("wrong-passwords", lambda n=n: self.wrong_passwords(n), 0.2))
            for n in range(100)
        ]
        workers.append(threading.Thread(target=self.sample))
        for worker in workers:
            worker.daemon = True
            worker.start()
        self.stop.wait(minutes * 60)
        self.stop.set()
        for worker in workers:
            worker.join(90)

    def report(self) -> None:
        peak_kib = _status_kib(self.dropd.process.pid, "VmHWM")
        logins = sorted(self.login_seconds)
        p95 = logins[int(0.95 * (len(logins) - 1))] if logins else float("nan")
        share = 100 * self.succeeded / self.attempted if self.attempted else 0
        print(f"legitimate uploads: {self.attempted} attempted, {self.succeeded} succeeded ({share:.1f} %); "
              f"{self.retried} tries of theirs failed and were retried (at most {RETRIES} tries an upload)")  # fmt: skip
        print(f"login time: p50 {statistics.median(logins) if logins else float('nan'):.2f} s, p95 {p95:.2f} s, "
              f"max {max(logins) if logins else float('nan'):.2f} s over {len(logins)} logins")  # fmt: skip
        print(f"peak RSS {peak_kib / 1024:.0f} MiB")
        if self.samples:
            for label, column in (("RSS (MiB)", 1), ("descriptors", 2), ("threads", 3)):
                values = [sample[column] / (1024 if column == 1 else 1) for sample in self.samples]
                quarters = "  ".join(f"{values[min(len(values) - 1, len(values) * q // 4)]:5.0f}" for q in (1, 2, 3))
                print(f"{label:<12} first {values[0]:7.0f}  at 1/4, 1/2, 3/4 {quarters}  last {values[-1]:7.0f}  "
                      f"peak {max(values):7.0f}  (median {statistics.median(values):.0f})")  # fmt: skip
        print("attacks run: " + ", ".join(f"{name} {count}" for name, count in sorted(self.attacks.items())))
        for failure in self.failures[:20]:
            print("  failed:", failure)

    def close(self) -> None:
        self.stalling.close()
        self.dropd.stop()


def _phone(index: int, sequence: int) -> str:
    number = index * 100_000 + sequence
    return f"(202) {234 + number // 10000 % 700}-{number % 10000:04d}"


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field}")


def _ftps(dropd, user: str, source: str) -> ftplib.FTP_TLS:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = ftplib.FTP_TLS(context=context, timeout=15, source_address=(source, 0))
    client.connect("127.0.0.1", dropd.ftp_port)
    client.login(user, PASSWORD)
    client.prot_p()
    return client


class _Reader:
    def __init__(self, data: bytes):
        self._data = data

    def read(self, size: int = -1) -> bytes:
        chunk, self._data = (self._data, b"") if size < 0 else (self._data[:size], self._data[size:])
        return chunk


def main() -> int:
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # the attackers' own clients complain a lot
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--partners", type=int, default=20)
    args = parser.parse_args()
    soak = Soak(Path(tempfile.mkdtemp(prefix="dropd-soak-")), args.partners)
    try:
        soak.start()
        soak.run(args.minutes)
        soak.report()
    finally:
        soak.close()
    return 0 if soak.attempted and soak.succeeded == soak.attempted else 1


if __name__ == "__main__":
    sys.exit(main())
