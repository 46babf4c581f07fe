"""Three instances behind one HAProxy (TCP mode) on one PostgreSQL, as docs/scaling.md shows:
300 files through HAProxy with OpenSSH's `sftp` and curl FTPS while one instance is killed
(SIGKILL) and restarted. Every upload a client was told succeeded is imported exactly once;
none is imported twice."""

import concurrent.futures
import json
import shutil
import signal
import subprocess
import threading
import time

import pytest

from tests.daemon.test_instances import cluster, roster  # noqa: F401 (the fixture)
from tests.helpers import PASSWORD, ClientKey, free_port, students_feed, wait_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def haproxy_config(sftp_port: int, ftp_port: int, nodes) -> str:
    """The shape docs/scaling.md gives: SFTP spread over the instances; FTPS control
    connections kept on one instance per client address (data connections go straight to the
    instance that owns the control connection, on its own passive range)."""
    servers = lambda kind: "".join(  # noqa: E731
        f"    server {name} 127.0.0.1:{getattr(node, kind)} check inter 500ms fall 1 rise 2\n"
        for name, node in zip("abc", nodes, strict=True)
    )
    return (
        "global\n    maxconn 2000\ndefaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n"
        "    timeout server 60s\n    retries 2\n    option redispatch\n"
        f"frontend sftp\n    bind 127.0.0.1:{sftp_port}\n    default_backend sftp\n"
        f"backend sftp\n    balance roundrobin\n{servers('sftp_port')}"
        f"frontend ftp\n    bind 127.0.0.1:{ftp_port}\n    default_backend ftp\n"
        f"backend ftp\n    balance roundrobin\n{servers('ftp_port')}"
    )


@pytest.mark.skipif(not shutil.which(HAPROXY), reason="HAProxy is not installed (apt install haproxy; .ci/run does)")
def test_three_instances_behind_haproxy_import_each_acknowledged_upload_once(cluster, tmp_path):  # noqa: F811
    key = ClientKey(tmp_path)
    for node in cluster:
        node.add_feed_partner("northfield", [students_feed(files="all")], authorized_keys=[key.public])
        node.start()
    (cluster[0].home("northfield") / "imports").mkdir(parents=True, exist_ok=True)
    sftp_port, ftp_port = free_port(), free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(sftp_port, ftp_port, cluster))
    proxy_log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 (closed in finally)
    proxy = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=proxy_log, stderr=subprocess.STDOUT)
    try:
        wait_port(sftp_port)
        wait_port(ftp_port)
        files = tmp_path / "files"
        files.mkdir()
        told_ok: set[str] = set()
        lock = threading.Lock()

        def sftp(number: int) -> None:
            name = f"StudentData_{number:03d}.csv"
            (files / name).write_bytes(roster(number, 1))
            result = subprocess.run(
                ["sftp", "-q", "-b", "-", "-P", str(sftp_port), "-i", str(key.path), "-o", "BatchMode=yes",
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
                 "northfield@127.0.0.1"],
                input=f"put {files / name} /imports/{name}\n", capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if result.returncode == 0:
                with lock:
                    told_ok.add(name)

        def ftps(number: int) -> None:
            name = f"StudentData_{number:03d}.csv"
            (files / name).write_bytes(roster(number, 1))
            result = subprocess.run(
                ["curl", "-sS", "--ssl-reqd", "--insecure", "--max-time", "30", "--user", f"northfield:{PASSWORD}",
                 "-T", str(files / name), f"ftp://127.0.0.1:{ftp_port}/imports/{name}"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if result.returncode == 0:
                with lock:
                    told_ok.add(name)

        victim = cluster[1]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(sftp if number % 2 else ftps, number) for number in range(300)]
            while sum(future.done() for future in futures) < 100:
                time.sleep(0.05)
            victim.process.send_signal(signal.SIGKILL)  # mid-transfer: uploads are in flight on it
            victim.process.wait(10)
            victim.stop()  # gathers what is left of the killed process (its log)
            while sum(future.done() for future in futures) < 180:
                time.sleep(0.05)
            victim.start()
            for future in futures:
                future.result()
        assert len(told_ok) >= 250, f"only {len(told_ok)} of 300 uploads succeeded"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            contacts = cluster[0].contacts("northfield")
            if {f"S{name[12:15].lstrip('0') or '0'}" for name in told_ok} <= set(contacts):
                break
            time.sleep(1)
        time.sleep(3)  # a late duplicate would show by now
        runs = json.loads(cluster[2].cli("runs", "--json", "--limit", "5000").stdout)
        imported = [run["file"] for run in runs if run["status"] == "success"]
        assert len(imported) == len(set(imported)), "no file imported twice"
        assert told_ok <= set(imported), sorted(told_ok - set(imported))[:10]
        assert {run["instance"] for run in runs if run["status"] == "success"} == {"a", "b", "c"}
    finally:
        proxy.terminate()
        proxy.wait(10)
        proxy_log.close()
