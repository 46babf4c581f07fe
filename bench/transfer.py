"""Transfer throughput of dropd's SFTP and FTPS against OpenSSH and vsftpd, in one run.

Run by hand, as root (it starts a second sshd and a vsftpd on high loopback ports and adds
a throw-away local user for vsftpd):

    python3 bench/transfer.py [--size-mib 300] [--repeat 5] [--sessions 50 200] [--session-mib 5]

Clients use their default algorithms (OpenSSH `sftp`, curl). Each measure is repeated and
the median reported: MiB/s for SFTP uploads and downloads against dropd and sshd (with the
server's CPU seconds per transfer), FTPS uploads against dropd and vsftpd, the ratios
dropd/reference, and for concurrent SFTP sessions the wall time, the number of failed
sessions and the daemon's peak RSS.
"""

import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import free_port, wait_port

BENCH_USER = "dropdbench"
PASSWORD = "bench-password-1"


def run(command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


class Servers:
    def __init__(self, work: Path):
        self.work = work
        self.processes: list[subprocess.Popen] = []
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client_key")])
        self.public_key = (work / "client_key.pub").read_text().strip()

    def start(self, command, port) -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(process)
        wait_port(port)
        return process

    def dropd(self):
        from daemon.dropzone.passwords import hash_password

        root = self.work / "dropd"
        (root / "partners.d").mkdir(parents=True)
        self.dropd_sftp, self.dropd_ftp = free_port(), free_port()
        low = free_port()
        (root / "dropd.toml").write_text(
            f"""
[daemon]
state_dir = "state"
drop_root = "drop"
[sftp]
listen = "127.0.0.1:{self.dropd_sftp}"
host_keys = ["state/host_key"]
[ftp]
listen = "127.0.0.1:{self.dropd_ftp}"
certfile = "state/tls.pem"
keyfile = "state/tls.key"
self_signed = true
passive_ports = "{low}-{min(low + 300, 65535)}"
[security]
# Every bench session comes from 127.0.0.1: lift the per-address limits meant for the internet.
max_unauthenticated = 1000
max_unauthenticated_per_address = 1000
max_sessions_per_address = 1000
"""
        )
        (root / "partners.d" / "bench.toml").write_text(
            f'[partner]\nname = "bench"\npassword_hash = "{hash_password(PASSWORD)}"\n'
            f'authorized_keys = ["{self.public_key}"]\n'
        )
        process = self.start(
            [sys.executable, "-m", "daemon.cli", "run", "-c", str(root / "dropd.toml")], self.dropd_sftp
        )
        wait_port(self.dropd_ftp)
        self.dropd_pid = process.pid
        self.dropd_home = root / "drop" / "bench"

    def sshd(self):
        root = self.work / "sshd"
        root.mkdir()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")])
        (root / "authorized_keys").write_text(self.public_key + "\n")
        self.sshd_port = free_port()
        (root / "sshd_config").write_text(
            f"""Port {self.sshd_port}
ListenAddress 127.0.0.1
HostKey {root / "host_key"}
AuthorizedKeysFile {root / "authorized_keys"}
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
PidFile {root / "sshd.pid"}
Subsystem sftp internal-sftp
ForceCommand internal-sftp
"""
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.sshd_pid = self.start(["/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")], self.sshd_port).pid
        self.sshd_dir = root / "uploads"
        self.sshd_dir.mkdir()

    def vsftpd(self):
        root = self.work / "vsftpd"
        root.mkdir()
        subprocess.run(["useradd", "-m", BENCH_USER], capture_output=True)
        run(["chpasswd"], input=f"{BENCH_USER}:{PASSWORD}\n")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=localhost", "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")])  # fmt: skip
        os.makedirs("/var/run/vsftpd/empty", exist_ok=True)
        self.vsftpd_port = free_port()
        low = free_port()
        (root / "vsftpd.conf").write_text(
            f"""listen=YES
listen_address=127.0.0.1
listen_port={self.vsftpd_port}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
pam_service_name=vsftpd
seccomp_sandbox=NO
ssl_enable=YES
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=NO
rsa_cert_file={root / "cert.pem"}
rsa_private_key_file={root / "key.pem"}
pasv_enable=YES
pasv_min_port={low}
pasv_max_port={min(low + 50, 65535)}
"""
        )
        self.start(["/usr/sbin/vsftpd", str(root / "vsftpd.conf")], self.vsftpd_port)

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["userdel", "-r", BENCH_USER], capture_output=True)


def sftp_put(servers: Servers, port: int, user: str, local: Path, remote: str) -> subprocess.CompletedProcess:
    return sftp_batch(servers, port, user, f"put {local} {remote}\n")


def sftp_get(servers: Servers, port: int, user: str, remote: str, local: Path) -> subprocess.CompletedProcess:
    return sftp_batch(servers, port, user, f"get {remote} {local}\n")


def sftp_batch(servers: Servers, port: int, user: str, batch: str) -> subprocess.CompletedProcess:
    command = [
        "sftp", "-q", "-b", "-", "-P", str(port), "-i", str(servers.work / "client_key"),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
        "-o", "LogLevel=ERROR", f"{user}@127.0.0.1",
    ]  # fmt: skip
    return subprocess.run(command, input=batch, capture_output=True, text=True, timeout=900)


def ftps_put(port: int, user: str, local: Path, remote: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "curl",
            "-sS",
            "--ssl-reqd",
            "--insecure",
            "--user",
            f"{user}:{PASSWORD}",
            "-T",
            str(local),
            f"ftp://127.0.0.1:{port}{remote}",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=900,
    )


def random_file(path: Path, mib: int) -> Path:
    """`mib` MiB of random bytes (nothing compresses them), readable by the servers' users."""
    with open(path, "wb") as handle:
        for _ in range(mib):
            handle.write(os.urandom(2**20))
    os.chmod(path, 0o644)
    return path


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has waited for (sshd's sessions)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def timed(label: str, transfer, size_mib: float, repeat: int, server_pid: int | None = None) -> float:
    """Median MiB/s of `repeat` transfers (and the server's median CPU seconds per transfer)."""
    rates, cpu = [], []
    for _ in range(repeat):
        before = cpu_seconds(server_pid) if server_pid else 0.0
        started = time.perf_counter()
        result = transfer()
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{label}: transfer failed: {result.stderr.strip()}")
        rates.append(size_mib / elapsed)
        if server_pid:
            cpu.append(cpu_seconds(server_pid) - before)
    rate = statistics.median(rates)
    spread = f"{min(rates):6.1f}-{max(rates):6.1f}"
    server_cpu = f"  server CPU {statistics.median(cpu):5.2f} s" if cpu else ""
    print(f"  {label:<30} {rate:7.1f} MiB/s (runs {spread}){server_cpu}")
    return rate, statistics.median(cpu) if cpu else None


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def concurrent_sessions(servers: Servers, count: int, local: Path) -> None:
    def one(index: int) -> int:
        return sftp_put(servers, servers.dropd_sftp, "bench", local, f"/concurrent_{count}_{index}.bin").returncode

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        codes = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    errors = sum(1 for code in codes if code != 0)
    total = count * local.stat().st_size / 2**20
    print(
        f"  {count:>3} sessions x {local.stat().st_size / 2**20:.0f} MiB: wall {elapsed:6.2f} s, "
        f"{total / elapsed:7.1f} MiB/s aggregate, errors {errors}, dropd peak RSS {peak_rss_mib(servers.dropd_pid):.0f} MiB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sessions", type=int, nargs="*", default=[50, 200])
    parser.add_argument("--session-mib", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/transfer.py starts sshd and vsftpd and adds a local user: run it as root", file=sys.stderr)
        return 2
    for tool in ("/usr/sbin/sshd", "/usr/sbin/vsftpd", "sftp", "curl", "openssl"):
        if not shutil.which(tool):
            print(f"missing {tool}: apt-get install openssh-server openssh-client vsftpd curl openssl", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="dropd-bench-"))
    os.chmod(work, 0o755)
    servers = Servers(work)
    try:
        servers.dropd()
        servers.sshd()
        servers.vsftpd()
        big = random_file(work / "big.bin", args.size_mib)
        print(f"{args.size_mib} MiB over loopback, median of {args.repeat} ({os.cpu_count()} cores)")
        size, repeat = args.size_mib, args.repeat
        back = work / "back.bin"
        up, up_cpu = timed(
            "dropd SFTP upload",
            lambda: sftp_put(servers, servers.dropd_sftp, "bench", big, "/big.bin"),
            size,
            repeat,
            servers.dropd_pid,
        )
        ref_up, ref_up_cpu = timed(
            "OpenSSH SFTP upload", lambda: sftp_put(servers, servers.sshd_port, "root", big, str(servers.sshd_dir / "big.bin")),
            size, repeat, servers.sshd_pid,
        )  # fmt: skip
        down, _ = timed(
            "dropd SFTP download",
            lambda: sftp_get(servers, servers.dropd_sftp, "bench", "/big.bin", back),
            size,
            repeat,
            servers.dropd_pid,
        )
        ref_down, _ = timed(
            "OpenSSH SFTP download", lambda: sftp_get(servers, servers.sshd_port, "root", str(servers.sshd_dir / "big.bin"), back),
            size, repeat, servers.sshd_pid,
        )  # fmt: skip
        ftps, _ = timed(
            "dropd FTPS upload", lambda: ftps_put(servers.dropd_ftp, "bench", big, "/big-ftps.bin"), size, repeat
        )
        ref_ftps, _ = timed(
            "vsftpd FTPS upload", lambda: ftps_put(servers.vsftpd_port, BENCH_USER, big, "/big-ftps.bin"), size, repeat
        )
        print(f"ratio SFTP upload dropd/OpenSSH:   {up / ref_up:.2f}  (must >= 0.9, aim >= 1.2)")
        print(f"ratio SFTP download dropd/OpenSSH: {down / ref_down:.2f}  (must >= 0.8, aim >= 1.0)")
        print(f"ratio SFTP upload server CPU dropd/OpenSSH: {up_cpu / ref_up_cpu:.2f}  (must <= 1.5, aim <= 1.0)")
        print(f"ratio FTPS dropd/vsftpd:           {ftps / ref_ftps:.2f}  (target >= 1.5)")
        small = work / "small.bin"
        small.write_bytes(os.urandom(args.session_mib * 2**20))
        os.chmod(small, 0o644)
        print("concurrent SFTP sessions against dropd")
        for count in args.sessions:
            concurrent_sessions(servers, count, small)
    finally:
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
