"""A full disk under the drop zone: a real tmpfs in the daemon's own mount namespace.

Any failed or short write poisons the upload: the client is told, the temporary file is
removed, nothing appears under the real name and nothing is imported. FTP answers 452 and
keeps the session.
"""

import ftplib
import io
import os
import ssl
import time

import pytest

from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import PASSWORD, students_feed

ROW = "{id},First{id},Last{id},202-555-{phone:04d},s{id}@example.org,,N,Biology\n"


def contacts_csv(rows: int) -> bytes:
    return (HEADER + "\n" + "".join(ROW.format(id=i, phone=i % 10000) for i in range(1, rows + 1))).encode()


@pytest.fixture
def full_disk_daemon(dropd, client_key):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs in a private mount namespace needs root")
    dropd.add_feed_partner("northfield", [students_feed()], authorized_keys=[client_key.public])
    dropd.start(drop_root_tmpfs="2m")
    (dropd.inside(dropd.home("northfield")) / "imports").mkdir(exist_ok=True)
    return dropd


def fill(path) -> None:
    """Write `path` until the file system is full."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (b"\0" * 65536, b"\0"):
            try:
                while os.write(descriptor, chunk):
                    pass
            except OSError:
                pass
    finally:
        os.close(descriptor)


def landing(dropd):
    return dropd.inside(dropd.home("northfield")) / "imports"


def assert_nothing_published(dropd) -> None:
    assert sorted(os.listdir(landing(dropd))) == ["archive"]
    assert os.listdir(landing(dropd) / "archive") == []
    assert dropd.runs("--feed", "students") == []


def test_sftp_upload_that_fills_the_disk_is_refused_and_not_imported(full_disk_daemon, client_key, tmp_path):
    dropd = full_disk_daemon
    big = tmp_path / "StudentData_big.csv"
    big.write_bytes(contacts_csv(60_000))  # about 3 MiB on a 2 MiB file system
    result = dropd.openssh_sftp("northfield", client_key, f"put {big} imports/StudentData_big.csv\n")
    assert result.returncode != 0
    assert "Failure" in result.stderr or "failure" in result.stderr.lower()
    dropd.wait_for("transfer.finished", status="failed", path="/imports/StudentData_big.csv")
    filler = dropd.inside(dropd.home("northfield")) / "filler"
    fill(filler)
    small = tmp_path / "StudentData_small.csv"
    small.write_bytes(contacts_csv(3))
    result = dropd.openssh_sftp("northfield", client_key, f"put {small} imports/StudentData_small.csv\n")
    assert result.returncode != 0, "a put on a full disk must fail"
    time.sleep(1.5)  # an arrival would have started a run by now
    assert_nothing_published(dropd)
    assert not dropd.find("upload.completed")
    filler.unlink()
    result = dropd.openssh_sftp("northfield", client_key, f"put {small} imports/StudentData_small.csv\n")
    assert result.returncode == 0, result.stderr
    (run,) = dropd.wait_for_runs("students")
    assert (run["status"], run["rows_in_file"], run["rows_applied"]) == ("success", 3, 3)


def ftps_client(dropd) -> ftplib.FTP_TLS:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = ftplib.FTP_TLS(context=context, timeout=30)
    client.connect("127.0.0.1", dropd.ftp_port)
    client.login("northfield", PASSWORD)
    client.prot_p()
    return client


def refused_reply(client: ftplib.FTP_TLS, command: str, data: bytes) -> str:
    """The reply to an upload the server refuses. The server may close the data connection
    while the client still sends (the client then sees the connection end), and the reply
    follows on the control connection either way."""
    try:
        client.storbinary(command, io.BytesIO(data))
    except ftplib.error_temp as exc:
        return str(exc)
    except (ssl.SSLError, OSError):
        try:
            client.voidresp()
        except ftplib.error_temp as exc:
            return str(exc)
    raise AssertionError(f"{command} was not refused")


def test_ftp_upload_that_fills_the_disk_answers_452_and_keeps_the_session(full_disk_daemon):
    dropd = full_disk_daemon
    client = ftps_client(dropd)
    try:
        assert refused_reply(client, "STOR imports/StudentData_big.csv", contacts_csv(60_000)).startswith("452 ")
        assert client.voidcmd("NOOP").startswith("200")
        filler = dropd.inside(dropd.home("northfield")) / "filler"
        fill(filler)
        assert refused_reply(client, "STOR imports/StudentData_small.csv", contacts_csv(3)).startswith("452 ")
        time.sleep(1.5)
        assert_nothing_published(dropd)
        filler.unlink()
        client.storbinary("STOR imports/StudentData_small.csv", io.BytesIO(contacts_csv(3)))
    finally:
        client.quit()
    (run,) = dropd.wait_for_runs("students")
    assert (run["status"], run["rows_applied"]) == ("success", 3)
