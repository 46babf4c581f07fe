"""An export into the partner's outbox, run by the daemon, downloaded the way partners do:
OpenSSH `sftp` and curl over FTPS."""

import json

from tests.helpers import CONTACTS_HEADER, MESSAGES_HEADER, conversations_feed, messages_feed, students_feed


def test_the_partner_downloads_the_export_over_sftp_and_ftps(dropd, client_key, tmp_path):
    dropd.add_feed_partner(
        "northfield", [students_feed(), messages_feed(), conversations_feed()], authorized_keys=[client_key.public]
    )
    dropd.start()
    contacts = "".join(f"S{n},First{n},Last{n},202-555-01{n:02d},,,,\n" for n in range(5))
    dropd.upload("northfield", "/imports/StudentData_1.csv", (CONTACTS_HEADER + "\n" + contacts).encode())
    dropd.wait_for_runs("students")
    rows = "".join(f"S{n},web,2026-11-20T10:00:{n:02d}Z,hi {n},,,,,,,,m{n}\n" for n in range(5))
    dropd.upload("northfield", "/log/messages_1.csv", (MESSAGES_HEADER + "\n" + rows).encode())
    dropd.wait_for_runs("log")
    [run] = json.loads(dropd.cli("run-now", "conversations", "--json").stdout)
    assert run["status"] == "success" and run["rows_in_file"] == 5 and run["trigger"] == "run-now"
    got = dropd.openssh_sftp("northfield", client_key, f"get outbox/{run['file']} {tmp_path / 'sftp.csv'}\n")
    assert got.returncode == 0, got.stderr
    fetched = dropd.curl_ftps(f"/outbox/{run['file']}", "-o", str(tmp_path / "ftps.csv"), user="northfield")
    assert fetched.returncode == 0, fetched.stderr
    sftp_bytes = (tmp_path / "sftp.csv").read_bytes()
    assert (
        sftp_bytes
        == (tmp_path / "ftps.csv").read_bytes()
        == (dropd.home("northfield") / "outbox" / run["file"]).read_bytes()
    )
    assert sftp_bytes.decode().splitlines()[1].split(",")[8] == "hi 0"
    assert json.loads(dropd.cli("run-now", "conversations", "--json").stdout)[0]["status"] == "skipped"
