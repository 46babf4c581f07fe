"""The `dropd` command as a person or a script meets it: fast to start, quiet on a closed
pipe, and showing partners' text without letting it act on the terminal."""

import subprocess
import sys

import pytest

from tests.helpers import CONTACTS_HEADER, InProcessFeeds, students_feed

HEAVY = ("numpy", "paramiko", "structlog", "pyftpdlib", "psycopg", "jinja2", "cryptography", "handlers", "daemon.store",
         "daemon.config", "daemon.commands")  # fmt: skip


def test_help_and_version_load_none_of_the_commands():
    """`dropd --help` took 17 times a bare Python: every command's imports were loaded first."""
    script = (
        "import sys\n"
        "from daemon.cli import main\n"
        "for argv in (['--help'], ['--version'], ['runs', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stderr.strip().splitlines()[-1] == "[]"
    assert "dropd " in result.stdout and "COMMAND" in result.stdout


@pytest.fixture
def feeds(tmp_path, password_hash):
    feeds = InProcessFeeds(tmp_path, password_hash)
    feeds.add_feed_partner("northfield", [students_feed()])
    feeds.start()
    yield feeds
    feeds.stop()


def closed_pipe(feeds, *args) -> subprocess.CompletedProcess:
    """The command with its stdout a pipe nobody reads any more (`| head -0`)."""
    command = [sys.executable, "-m", "daemon.cli", *args]
    if args[0] not in ("--help", "--version"):
        command += ["-c", str(feeds.config_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, "", stderr)


def test_every_listing_ends_quietly_on_a_closed_pipe(feeds):
    rows = "".join(f"{n},Name{n},Last,202-555-{n:04d},,,,\n" for n in range(100, 400))
    feeds.upload("northfield", "/imports/StudentData_1.csv", (CONTACTS_HEADER + "\n" + rows).encode())
    for args in (["runs"], ["contacts", "--partner", "northfield"], ["runs", "--json"]):
        result = closed_pipe(feeds, *args)
        assert (result.returncode, result.stderr) == (141, ""), args
    assert closed_pipe(feeds, "--help").stderr == ""


def test_partner_text_in_listings_cannot_drive_the_terminal(feeds):
    hostile = "Ada\x1b]0;owned\x07\x1b[2J"
    feeds.upload(
        "northfield", "/imports/StudentData_1.csv", f"{CONTACTS_HEADER}\n1,{hostile},L,202-555-0143,,,,\n".encode()
    )
    listing = feeds.cli("contacts", "--partner", "northfield").stdout
    assert "\x1b" not in listing and "\x07" not in listing
    assert "Ada\\x1b]0;owned\\x07\\x1b[2J L" in listing
