"""SFTP throughput of dropd against OpenSSH's sshd (internal-sftp), per cipher, pair by pair.

Run by hand, as root (it starts a second sshd on a high loopback port):

    python3 bench/sftp_ciphers.py [--size-mib 200] [--repeat 5] [--ciphers default chacha20-poly1305@openssh.com ...]

For each cipher (`default`: what OpenSSH's `sftp` picks by itself), each repeat uploads and
then downloads the file with OpenSSH's `sftp` against dropd and, right after, against sshd;
each dropd run is divided by the sshd run beside it (the medians of each side alone swing
±0.15 on shared machines). Prints, per cipher and direction, the median MiB/s of each
server, the median of the pairwise ratios (dropd / sshd) and each server's CPU seconds per
GiB moved (sshd's includes its session processes). Goal, default client: uploads >= 1.1,
downloads >= 1.0.
"""

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("transfer_bench", HERE / "transfer.py")
transfer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(transfer)

CIPHERS = ["default", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-gcm@openssh.com"]


def sftp(servers, port: int, user: str, batch: str, cipher: str) -> tuple[float, str]:
    """Seconds the batch took, and the cipher the client negotiated."""
    chosen = [] if cipher == "default" else ["-c", cipher]
    command = [
        "sftp", "-v", "-b", "-", "-P", str(port), "-i", str(servers.work / "client_key"), *chosen,
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
        f"{user}@127.0.0.1",
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, input=batch, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"sftp failed: {result.stderr[-2000:]}")
    negotiated = next((line.split("cipher: ", 1)[1].split()[0] for line in result.stderr.splitlines()
                       if "kex: client->server cipher:" in line), "?")  # fmt: skip
    return elapsed, negotiated


def measure(servers, cipher: str, big: Path, repeat: int, size_mib: int) -> None:
    back = servers.work / "back.bin"
    sides = {
        "dropd": (servers.dropd_sftp, "bench", "/big.bin", servers.dropd_pid),
        "sshd": (servers.sshd_port, "root", str(servers.sshd_dir / "big.bin"), servers.sshd_pid),
    }
    seconds = {(side, way): [] for side in sides for way in ("up", "down")}
    cpu = {(side, way): [] for side in sides for way in ("up", "down")}
    negotiated = set()
    for _ in range(repeat):
        for way in ("up", "down"):
            for side, (port, user, remote, pid) in sides.items():
                batch = f"put {big} {remote}\n" if way == "up" else f"get {remote} {back}\n"
                before = transfer.cpu_seconds(pid)
                elapsed, chosen = sftp(servers, port, user, batch, cipher)
                cpu[(side, way)].append(transfer.cpu_seconds(pid) - before)
                seconds[(side, way)].append(elapsed)
                negotiated.add(f"{side}:{chosen}")
    gib = size_mib / 1024
    print(f"{cipher} (negotiated: {', '.join(sorted(negotiated))})")
    for way, label in (("up", "upload"), ("down", "download")):
        dropd, sshd = seconds[("dropd", way)], seconds[("sshd", way)]
        ratios = [s / d for d, s in zip(dropd, sshd, strict=True)]  # throughput ratio = time ratio inverted
        print(
            f"  {label:<9} dropd {size_mib / statistics.median(dropd):7.1f} MiB/s   sshd "
            f"{size_mib / statistics.median(sshd):7.1f} MiB/s   pairwise median dropd/sshd {statistics.median(ratios):5.2f} "
            f"(runs {min(ratios):.2f}-{max(ratios):.2f})   server CPU s/GiB: dropd "
            f"{statistics.median(cpu[('dropd', way)]) / gib:5.2f}, sshd {statistics.median(cpu[('sshd', way)]) / gib:5.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ciphers", nargs="+", default=CIPHERS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/sftp_ciphers.py starts sshd: run it as root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dropd-ciphers-"))
    os.chmod(work, 0o755)
    servers = transfer.Servers(work)
    try:
        servers.dropd()
        servers.sshd()
        big = transfer.random_file(work / "big.bin", args.size_mib)
        print(f"{args.size_mib} MiB over loopback with OpenSSH's sftp, {args.repeat} pairs ({os.cpu_count()} cores)")
        for cipher in args.ciphers:
            measure(servers, cipher, big, args.repeat, args.size_mib)
    finally:
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
