"""dropd under a real systemd: a container (systemd-nspawn) booted over an overlay of this
machine, dropd installed inside the way docs/operations.md says, the unit started and
checked by tests/systemd/inside.py. Needs root and systemd-nspawn (systemd-container)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = """[Unit]
Description=dropd test: the probe, nothing else
Requires=dropd-probe.service
After=dropd-probe.service
AllowIsolate=yes
"""
PROBE = """[Unit]
Description=dropd test probe
After=systemd-journald.service systemd-sysusers.service
[Service]
Type=oneshot
ExecStart=/usr/bin/python3 /src/tests/systemd/inside.py
TimeoutStartSec=300
"""


@pytest.mark.systemd
def test_the_unit_under_a_real_systemd(tmp_path):
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn"):
        pytest.skip("needs root and systemd-nspawn (apt install systemd-container; .ci/run does)")
    wheels, out, units = tmp_path / "wheels", tmp_path / "out", tmp_path / "units"
    for folder in (wheels, out, units):
        folder.mkdir()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (units / "dropd-test.target").write_text(TARGET)
    (units / "dropd-probe.service").write_text(PROBE)
    layer = tmp_path / "layer"
    script = f"""
        set -e
        mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn
        mkdir -p {layer} && mount -t tmpfs tmpfs {layer}
        mkdir {layer}/upper {layer}/work {layer}/root
        mount -t overlay overlay -o lowerdir=/,upperdir={layer}/upper,workdir={layer}/work {layer}/root
        exec timeout 400 systemd-nspawn -q --keep-unit --register=no --private-network --console=pipe \\
            -D {layer}/root --boot --bind-ro={ROOT}:/src --bind-ro={wheels}:/wheels --bind={out}:/out \\
            --bind-ro={units}/dropd-test.target:/etc/systemd/system/dropd-test.target \\
            --bind-ro={units}/dropd-probe.service:/etc/systemd/system/dropd-probe.service \\
            systemd.unit=dropd-test.target
    """
    booted = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True, timeout=450
    )
    results_file = out / "results.json"
    journal = (out / "journal.txt").read_text() if (out / "journal.txt").exists() else ""
    assert results_file.exists(), f"the probe wrote nothing:\n{booted.stdout[-3000:]}\n{booted.stderr[-3000:]}"
    results = json.loads(results_file.read_text())
    failed = {name: result["detail"] for name, result in results.items() if not result["ok"]}
    assert failed == {}, f"{json.dumps(failed, indent=2)}\njournal:\n{journal[-4000:]}"
    for check in (
        "install", "verify", "exposure", "active after READY", "status line", "ports 22 and 21 as dropd",
        "writes only state and drop", "reload adds a partner while a session stays",
        "broken reload fails and keeps the old config", "watchdog restarts a hung daemon", "stop waits for a transfer",
    ):  # fmt: skip
        assert check in results, f"{check} did not run: {results}"
