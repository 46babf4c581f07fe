"""The shipped unit file, checked by systemd's own tools."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "dropd.service"


@pytest.fixture
def installed_unit(tmp_path):
    """The unit with ExecStart pointing at this checkout's dropd, as an install would place it."""
    dropd = shutil.which("dropd")
    assert dropd, "dropd is not installed (pip install -e .)"
    unit = tmp_path / "dropd.service"
    unit.write_text(UNIT.read_text().replace("/opt/dropd/bin/dropd", dropd))
    return unit


def test_systemd_analyze_verify_is_silent(installed_unit):
    result = subprocess.run(["systemd-analyze", "verify", str(installed_unit)], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stderr == "" and result.stdout == ""


def test_unit_is_notify_and_hardened(installed_unit):
    text = installed_unit.read_text()
    for line in (
        "Type=notify",
        f"ExecReload={shutil.which('dropd')} reload -c /etc/dropd/dropd.toml",
        "User=dropd",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/dropd /srv/dropd",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_LEASE",
        "Restart=always",
    ):
        assert line in text.splitlines()
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(installed_unit)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for dropd.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout
