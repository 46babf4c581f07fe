"""The folders a partner's feeds use are not the partner's to rename or remove: a feed whose
landing folder was renamed saw no files, silently. Real clients say why they were refused."""

import ftplib

import pytest

from tests.helpers import ftps, students_feed

pytestmark = pytest.mark.slow


@pytest.fixture
def running(dropd, client_key):
    dropd.add_feed_partner("northfield", [students_feed(archive_path="/done", error_report=True)],
                           authorized_keys=[client_key.public])  # fmt: skip
    dropd.start()
    (dropd.home("northfield") / "imports" / "failed").mkdir(exist_ok=True)
    (dropd.home("northfield") / "mine").mkdir()
    return dropd


FOLDERS = ["/imports", "/done", "/imports/failed"]


def test_sftp_cannot_rename_or_remove_a_feed_folder_and_is_told_why(running, client_key):
    batch = "".join(f"-rename {folder} /moved\n-rmdir {folder}\n" for folder in FOLDERS)
    result = running.openssh_sftp("northfield", client_key, batch + "rename /mine /yours\nrmdir /yours\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Permission denied") == 2 * len(FOLDERS), result.stderr
    for folder in FOLDERS:
        assert (running.home("northfield") / folder.lstrip("/")).is_dir()
    assert not (running.home("northfield") / "moved").exists()
    assert not (running.home("northfield") / "yours").exists(), "the partner's own folder is theirs"
    transport, sftp = running.paramiko_sftp("northfield")
    with transport:
        for operation in (lambda: sftp.rename("/done", "/x"), lambda: sftp.posix_rename("/done", "/x"),
                          lambda: sftp.rmdir("/imports/failed")):  # fmt: skip
            with pytest.raises(PermissionError, match="is used by the feed students; it cannot be renamed or removed"):
                operation()


def test_ftps_cannot_rename_or_remove_a_feed_folder_or_its_parent(running):
    (running.home("northfield") / "outer").mkdir()
    client = ftps(running)
    try:
        for folder in FOLDERS:
            with pytest.raises(ftplib.error_perm, match=r"^550 .*used by the feed students; it cannot be renamed"):
                client.rename(folder, "/moved")
            with pytest.raises(ftplib.error_perm, match=r"^550 .*used by the feed students"):
                client.rmd(folder)
        client.rename("/outer", "/elsewhere")  # not a feed's: allowed
    finally:
        client.quit()
    for folder in FOLDERS:
        assert (running.home("northfield") / folder.lstrip("/")).is_dir()


def test_a_folder_holding_a_feed_folder_is_protected_too(dropd, client_key):
    dropd.add_feed_partner("northfield", [students_feed(path="/in/students", archive_path="/in/students/archive")],
                           authorized_keys=[client_key.public])  # fmt: skip
    dropd.start()
    result = dropd.openssh_sftp("northfield", client_key, "-rename /in /out\n")
    assert "Permission denied" in result.stderr, result.stderr
    client = ftps(dropd)
    try:
        with pytest.raises(ftplib.error_perm, match="/in holds /in/students, which is used by the feed students"):
            client.rename("/in", "/out")
    finally:
        client.quit()
    assert (dropd.home("northfield") / "in" / "students").is_dir()
