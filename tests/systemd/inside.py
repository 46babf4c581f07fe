"""Run inside the systemd container by test_nspawn.py (the probe unit), with the system Python.

Installs dropd the way docs/operations.md says, starts the unit, checks it, and writes
/out/results.json: {check: {"ok": bool, "detail": str}}. Powers the container off at the end.
"""

import json
import os
import socket
import subprocess
import time
import traceback
from pathlib import Path

RESULTS: dict = {}
SRC = Path("/src")
CLIENT = "/opt/dropd/bin/python"


def sh(command: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{command}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def record(name: str, ok: bool, detail: str = "") -> None:
    RESULTS[name] = {"ok": bool(ok), "detail": detail[-3000:]}
    Path("/out/results.json").write_text(json.dumps(RESULTS, indent=2))


def show(*properties: str) -> dict:
    output = sh(f"systemctl show dropd -p {','.join(properties)}").stdout
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def wait_until(condition, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


CLIENT_SCRIPT = r"""
import sys, time, paramiko
user, action = sys.argv[1], sys.argv[2]
transport = paramiko.Transport(("127.0.0.1", 22))
transport.connect(username=user, password="test password")
sftp = paramiko.SFTPClient.from_transport(transport)
if action == "hold":  # stay connected until /tmp/go exists, then prove the session still works
    open(f"/tmp/{user}-connected", "w").close()
    import os
    while not os.path.exists("/tmp/go"):
        time.sleep(0.1)
    sftp.listdir("/")
    with sftp.open("/after-reload.txt", "wb") as handle:
        handle.write(b"still here\n")
    print("ok")
elif action == "slow":  # an upload that takes about four seconds
    with sftp.open("/slow.bin", "wb") as handle:
        for _ in range(40):
            handle.write(b"x" * 1024)
            handle.flush()
            time.sleep(0.1)
    print("ok")
else:
    print(sorted(sftp.listdir("/")))
transport.close()
"""


def install() -> None:
    sh("python3 -m venv /opt/dropd")
    sh("/opt/dropd/bin/pip install -q --no-index --find-links /wheels dropd", timeout=300)
    sh(f"install -m 0644 {SRC}/systemd/dropd.sysusers.conf /usr/lib/sysusers.d/dropd.conf")
    sh(f"install -m 0644 {SRC}/systemd/dropd.tmpfiles.conf /usr/lib/tmpfiles.d/dropd.conf")
    sh(f"install -m 0644 {SRC}/systemd/dropd.service /etc/systemd/system/dropd.service")
    sh("systemd-sysusers && systemd-tmpfiles --create")
    sh("install -d -m 0755 /etc/dropd /etc/dropd/partners.d")
    sh(f"install -m 0644 {SRC}/etc/production/dropd.toml /etc/dropd/dropd.toml")
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=localhost "
        "-keyout /etc/dropd/tls.key -out /etc/dropd/tls.pem 2>/dev/null && chmod 0600 /etc/dropd/tls.key"
    )
    # The test's own watchdog interval, so a hang is noticed in seconds.
    sh("mkdir -p /etc/systemd/system/dropd.service.d")
    Path("/etc/systemd/system/dropd.service.d/test.conf").write_text("[Service]\nWatchdogSec=4s\n")
    add_partner("alpha")
    sh("install -d -o dropd /opt/dropd-owned")


def add_partner(name: str) -> None:
    hashed = sh("/opt/dropd/bin/dropd passwd", input="test password\n").stdout.strip()
    Path(f"/etc/dropd/partners.d/{name}.toml").write_text(f'[partner]\nname = "{name}"\npassword_hash = "{hashed}"\n')


def client(user: str, action: str, background: bool = False):
    command = [CLIENT, "-c", CLIENT_SCRIPT, user, action]
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def checks() -> None:
    verify = sh("systemd-analyze verify /etc/systemd/system/dropd.service", check=False)
    record("verify", verify.returncode == 0 and not verify.stderr.strip(), verify.stderr)
    security = sh("systemd-analyze security dropd.service", check=False).stdout
    score = [line for line in security.splitlines() if "Overall exposure level" in line]
    record("exposure", bool(score) and float(score[0].split(":")[1].split()[0]) <= 2.0, "\n".join(score))

    sh("systemctl daemon-reload")
    started = sh("systemctl start dropd", check=False, timeout=60)
    state = show("ActiveState", "SubState", "MainPID", "StatusText")
    record(
        "active after READY",
        started.returncode == 0 and state["ActiveState"] == "active",
        json.dumps(state) + started.stderr,
    )
    pid = state["MainPID"]
    record("status line", state["StatusText"].startswith("serving 1 partners"), state["StatusText"])

    user = sh(f"ps -o user= -p {pid}").stdout.strip()
    with socket.create_connection(("127.0.0.1", 22), timeout=5) as sock:
        banner = sock.recv(64)
    with socket.create_connection(("127.0.0.1", 21), timeout=5) as sock:
        greeting = sock.recv(64)
    record("ports 22 and 21 as dropd", user == "dropd" and banner.startswith(b"SSH-2.0-") and greeting.startswith(b"220"),
           f"user={user} banner={banner!r} greeting={greeting!r}")  # fmt: skip

    # A folder the dropd user owns but the unit does not list in ReadWritePaths: read-only to it.
    as_dropd = f"nsenter -t {pid} -m -- setpriv --reuid=dropd --regid=dropd --init-groups"
    outside = sh(f"{as_dropd} touch /opt/dropd-owned/x", check=False)
    inside_state = sh(f"{as_dropd} touch /var/lib/dropd/x /srv/dropd/x", check=False)
    record("writes only state and drop", outside.returncode != 0 and "Read-only" in outside.stderr and inside_state.returncode == 0,
           outside.stderr + inside_state.stderr)  # fmt: skip

    holder = client("alpha", "hold", background=True)
    wait_until(lambda: os.path.exists("/tmp/alpha-connected"), 30)
    add_partner("beta")
    reload = sh("systemctl reload dropd", check=False, timeout=60)
    beta = client("beta", "list")
    Path("/tmp/go").touch()
    held, _ = holder.communicate(timeout=60)
    record("reload adds a partner while a session stays",
           reload.returncode == 0 and beta.returncode == 0 and held.strip() == "ok"
           and Path("/srv/dropd/alpha/after-reload.txt").exists(), f"{reload.stderr} {beta.stdout}{beta.stderr} {held}")  # fmt: skip

    Path("/etc/dropd/partners.d/broken.toml").write_text("[partner\nname = oops\n")
    broken = sh("systemctl reload dropd", check=False, timeout=60)
    time.sleep(1)
    journal = sh("journalctl -u dropd --no-pager -o cat", check=False).stdout
    active = show("ActiveState")["ActiveState"]
    record("broken reload fails and keeps the old config",
           broken.returncode != 0 and active == "active" and "broken.toml" in journal
           and "config.reload_rejected" in journal and client("alpha", "list").returncode == 0,
           f"{broken.returncode} {active} {journal[-1500:]}")  # fmt: skip
    Path("/etc/dropd/partners.d/broken.toml").unlink()

    restarts = int(show("NRestarts")["NRestarts"])
    sh(f"kill -STOP {pid}")
    came_back = wait_until(
        lambda: int(show("NRestarts")["NRestarts"]) > restarts and show("ActiveState")["ActiveState"] == "active",
        40,
        0.5,
    )
    new_pid = show("MainPID")["MainPID"]
    record(
        "watchdog restarts a hung daemon",
        came_back and new_pid != pid,
        f"restarts {restarts}->{show('NRestarts')} pid {pid}->{new_pid}",
    )

    wait_until(lambda: client("alpha", "list").returncode == 0, 30)
    upload = client("alpha", "slow", background=True)
    time.sleep(1.5)
    stopped = sh("systemctl stop dropd", check=False, timeout=90)
    out, err = upload.communicate(timeout=60)
    size = Path("/srv/dropd/alpha/slow.bin").stat().st_size if Path("/srv/dropd/alpha/slow.bin").exists() else -1
    record(
        "stop waits for a transfer",
        stopped.returncode == 0 and out.strip() == "ok" and size == 40 * 1024,
        f"{out}{err} size={size}",
    )


def main() -> None:
    try:
        install()
        record("install", True)
        checks()
    except Exception:
        record("probe", False, traceback.format_exc())
    finally:
        journal = sh("journalctl -u dropd --no-pager -o cat", check=False).stdout
        Path("/out/journal.txt").write_text(journal)
        subprocess.run(["systemctl", "poweroff", "--no-block"])


if __name__ == "__main__":
    main()
