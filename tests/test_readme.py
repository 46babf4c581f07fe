"""README's first command and the tour after it, word for word, on the machine's own Debian
Python (PEP 668: its pip refuses to install outside a virtual environment), in a copy of
the repository that has never been run: the daemon starts on etc/ with no mail server, takes
the example file, and says its recap waits for one."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DEBIAN_PATH = "/usr/bin:/bin"
"""The system's python3 first, as on a machine that has only what Debian ships."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/usr/lib/python3.11/EXTERNALLY-MANAGED").exists(), reason="not a Debian 12 Python"),
]


def readme_block(after: str) -> list[str]:
    """The lines of the first indented block after the line holding `after`."""
    text = README.split(after, 1)[1]
    block = re.search(r"\n\n((?:    .*\n)+)", text).group(1)
    return [line[4:] for line in block.splitlines()]


def fresh_copy(target: Path) -> Path:
    """The repository's files (tracked and new, not ignored), without state, venv or caches."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, names):
        source = ROOT / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode())
    return target


def shell(command: str, cwd: Path, **options):
    env = {**os.environ, "PATH": f"{DEBIAN_PATH}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, **options)


def test_the_old_first_command_is_refused_by_debian_pip(tmp_path):
    """The README said `python3 -m pip install -e .`: Debian 12 refuses it."""
    old = shell("python3 -m pip install -e .", fresh_copy(tmp_path), stderr=subprocess.PIPE, text=True)
    _, stderr = old.communicate(timeout=120)
    assert old.returncode != 0 and "externally-managed-environment" in stderr


def test_the_readme_tour_works_on_a_machine_that_never_saw_the_project(tmp_path):
    repo = fresh_copy(tmp_path / "dropd")
    [start] = readme_block("Start the daemon with the example configuration")
    assert start.startswith("python3 -m venv .venv && ")
    log = (tmp_path / "daemon.log").open("w")
    daemon = shell(start, repo, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # pip fetches the dependencies the first time
        while "daemon.started" not in (tmp_path / "daemon.log").read_text():
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(0.5)
        tour = readme_block("it is imported at once (`on_arrival`)")
        outputs = []
        for command in tour:
            step = shell(command, repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = step.communicate(timeout=60)
            assert step.returncode == 0, f"{command}\n{out}{err}"
            outputs.append(out)
            if command.startswith("curl"):
                time.sleep(3)  # imported at once; the run takes a moment
        runs, contacts, status = outputs[-3:]
        assert "success" in runs and "StudentData_example.csv" in runs
        assert "1001" in contacts and "Ada Lovelace" in contacts
        assert "mail waiting to be sent: 1" in status
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        log.close()
