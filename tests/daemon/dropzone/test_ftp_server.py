"""The FTPS server, driven by lftp, curl and ftplib against the running daemon."""

import ftplib
import hashlib
import io
import os
import ssl
import subprocess

import pytest

from tests.helpers import PASSWORD, ftps


@pytest.fixture
def running(dropd):
    dropd.add_partner("northfield")
    dropd.add_partner("westbrook")
    dropd.start()
    return dropd


def test_lftp_does_every_operation(running, tmp_path):
    local = tmp_path / "StudentData_2026_11_23.csv"
    local.write_bytes(b"id,name\n1,Ada\n" * 5000)
    script = "; ".join(
        [
            "mkdir imports",
            f"put {local} -o imports/StudentData_2026_11_23.csv",
            "cls -l imports",
            f"get imports/StudentData_2026_11_23.csv -o {tmp_path / 'back.csv'}",
            "mv imports/StudentData_2026_11_23.csv imports/renamed.csv",
            "chmod 640 imports/renamed.csv",
            "rm imports/renamed.csv",
            "mkdir imports/sub",
            "rmdir imports/sub",
        ]
    )
    result = running.lftp("northfield", script)
    assert result.returncode == 0, result.stderr
    assert "StudentData_2026_11_23.csv" in result.stdout
    assert (tmp_path / "back.csv").read_bytes() == local.read_bytes()
    assert os.listdir(running.home("northfield") / "imports") == []
    upload = running.wait_for("upload.completed", partner="northfield", protocol="ftp")[0]
    assert upload["path"] == "/imports/StudentData_2026_11_23.csv" and upload["size"] == local.stat().st_size


def test_curl_ftps_upload_list_download(running, tmp_path):
    local = tmp_path / "list.csv"
    local.write_text("email\na@example.org\n")
    assert running.curl_ftps("/list.csv", "-T", str(local), user="westbrook").returncode == 0
    listing = running.curl_ftps("/", "--list-only", user="westbrook")
    assert listing.stdout.split() == ["list.csv"]
    fetched = running.curl_ftps("/list.csv", user="westbrook")
    assert fetched.stdout == local.read_text()
    running.wait_for("upload.completed", partner="westbrook", path="/list.csv", protocol="ftp")


def test_ftplib_size_mdtm_append_and_resume(running):
    client = ftps(running)
    try:
        client.storbinary("STOR data.csv", io.BytesIO(b"0123456789"))
        assert client.size("data.csv") == 10
        assert client.sendcmd("MDTM data.csv").startswith("213")
        client.storbinary("APPE data.csv", io.BytesIO(b"abc"))
        client.storbinary("STOR data.csv", io.BytesIO(b"XYZ"), rest=5)
        assert client.pwd() == "/"
        client.cwd("/")
    finally:
        client.quit()
    assert (running.home("northfield") / "data.csv").read_bytes() == b"01234XYZ89abc"


def test_plain_ftp_login_is_refused_when_tls_is_required(running):
    client = ftplib.FTP(timeout=10)
    client.connect("127.0.0.1", running.ftp_port)
    with pytest.raises(ftplib.error_perm, match="TLS required"):
        client.login("northfield", PASSWORD)
    client.close()


def test_part_upload_then_rename_hands_off_only_the_final_name(running):
    client = ftps(running)
    try:
        client.storbinary("STOR StudentData.csv.part", io.BytesIO(b"a,b\n"))
        client.rename("StudentData.csv.part", "StudentData.csv")
    finally:
        client.quit()
    completed = running.wait_for("upload.completed", partner="northfield")
    assert [event["path"] for event in completed] == ["/StudentData.csv"]


def test_temporary_names_are_hidden_and_reserved(running):
    home = running.home("northfield")
    (home / ".dropd-0123456789abcdef.upload").write_bytes(b"in flight")
    (home / "visible.csv").write_bytes(b"done")
    client = ftps(running)
    try:
        assert client.nlst() == ["visible.csv"]
        with pytest.raises(ftplib.error_perm):
            client.delete(".dropd-0123456789abcdef.upload")
        with pytest.raises(ftplib.error_perm):
            client.storbinary("STOR .dropd-aaaaaaaaaaaaaaaa.upload", io.BytesIO(b"x"))
    finally:
        client.quit()


def test_partners_are_isolated_and_escapes_refused(running, tmp_path):
    (running.home("westbrook") / "secret.csv").write_text("westbrook only")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, running.home("northfield") / "escape")
    client = ftps(running)
    try:
        for path in ("../westbrook/secret.csv", "/../westbrook/secret.csv", "/../../../etc/passwd"):
            with pytest.raises(ftplib.error_perm):
                client.size(path)
        with pytest.raises(ftplib.error_perm):
            client.storbinary("STOR escape/new.csv", io.BytesIO(b"x"))
        with pytest.raises(ftplib.error_perm):
            client.cwd("escape")
        client.cwd("..")
        assert client.pwd() == "/"
    finally:
        client.quit()
    assert os.listdir(outside) == []


# 1 byte to 64 MiB, around the 16 KiB TLS record size and the 64 KiB read size.
UPLOAD_SIZES = [1, 2, 1000, 16383, 16384, 16385, 65535, 65536, 65537, 100_000, 262_144, 1 << 20, 1 << 20,
                (1 << 20) + 7, 2 << 20, 3_000_001, 5 << 20, 8 << 20, 16 << 20, 64 << 20]  # fmt: skip


def _random_files(folder, sizes) -> dict[str, str]:
    """Files of the given sizes with random content; returns name -> sha256."""
    folder.mkdir()
    digests = {}
    for number, size in enumerate(sizes):
        content = os.urandom(size)
        name = f"upload_{number:02d}_{size}.bin"
        (folder / name).write_bytes(content)
        digests[name] = hashlib.sha256(content).hexdigest()
    return digests


def _landed(home, names) -> dict[str, str]:
    return {name: hashlib.sha256((home / name).read_bytes()).hexdigest() for name in names if (home / name).exists()}


def test_rclone_uploads_over_tls13_arrive_whole(running, tmp_path):
    """Go's TLS 1.3 client (rclone) left most uploads truncated and published (pyftpdlib#602)."""
    digests = _random_files(tmp_path / "out", UPLOAD_SIZES)
    obscured = subprocess.run(
        ["rclone", "obscure", PASSWORD], capture_output=True, text=True, check=True
    ).stdout.strip()
    remote = (
        f":ftp,host=127.0.0.1,port={running.ftp_port},user=northfield,pass={obscured},"
        "explicit_tls=true,no_check_certificate=true:/rclone"
    )
    result = subprocess.run(
        ["rclone", "copy", "--retries", "1", "--low-level-retries", "1", "--transfers", "4", "--config", "/dev/null",
         str(tmp_path / "out"), remote],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert _landed(running.home("northfield") / "rclone", digests) == digests
    completed = running.wait_for("upload.completed", partner="northfield", count=len(digests))
    assert sorted(event["size"] for event in completed) == sorted(UPLOAD_SIZES)


def test_lftp_and_curl_uploads_arrive_whole(running, tmp_path):
    sizes = [1, 16385, 1 << 20, 5 << 20, 64 << 20]
    digests = _random_files(tmp_path / "out", sizes)
    script = "; ".join(f"put {tmp_path / 'out' / name} -o {name}" for name in digests)
    result = running.lftp("northfield", script, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _landed(running.home("northfield"), digests) == digests
    for name in digests:
        uploaded = running.curl_ftps(
            f"/curl/{name}", "--ftp-create-dirs", "-T", str(tmp_path / "out" / name), user="westbrook"
        )
        assert uploaded.returncode == 0, uploaded.stderr
    assert _landed(running.home("westbrook") / "curl", digests) == digests


def test_append_to_a_file_beyond_2_gib_keeps_every_byte(running):
    """One sendfile() copies at most ~2 GiB: APPE to a 3 GiB file kept 2,147,479,556 bytes."""
    existing = running.home("northfield") / "big.bin"
    size = 3 * 1024**3
    marks = {0: b"start", 2_500_000_000: b"middle", size - 3: b"end"}
    with open(existing, "wb") as handle:
        for offset, mark in marks.items():
            handle.seek(offset)
            handle.write(mark)
    client = ftps(running)
    try:
        client.storbinary("APPE big.bin", io.BytesIO(b"+tail"))
    finally:
        client.quit()
    assert existing.stat().st_size == size + 5
    with open(existing, "rb") as handle:
        for offset, mark in marks.items():
            handle.seek(offset)
            assert handle.read(len(mark)) == mark
        handle.seek(size)
        assert handle.read() == b"+tail"
    assert running.wait_for("upload.completed", path="/big.bin")[0]["size"] == size + 5


def test_reserved_names_and_the_home_itself_are_refused(running):
    reserved = ".dropd-0123456789abcdef.upload"
    home = running.home("northfield")
    (home / reserved).write_bytes(b"in flight")
    client = ftps(running)
    try:
        client.mkd("folder")
        client.storbinary("STOR a.csv", io.BytesIO(b"x"))
        for command in (
            lambda: client.mkd(reserved),
            lambda: client.mkd(f"folder/{reserved}"),
            lambda: client.rename("a.csv", reserved),
            lambda: client.rename(reserved, "taken.csv"),
            lambda: client.rmd("/"),
            lambda: client.sendcmd("SITE CHMOD 777 /"),
            lambda: client.sendcmd(f"SITE CHMOD 777 {reserved}"),
        ):
            with pytest.raises(ftplib.error_perm):
                command()
    finally:
        client.quit()
    assert sorted(os.listdir(home)) == sorted([reserved, "a.csv", "folder"])
    assert home.stat().st_mode & 0o007 == 0


def test_a_tls13_only_client_uploads_and_downloads_whole(running, tmp_path):
    """Data connections were pinned to TLS 1.2 (to dodge pyftpdlib#602): a client that speaks
    TLS 1.3 only was refused at its first data connection with a protocol version alert."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    versions = []

    class Client(ftplib.FTP_TLS):
        def ntransfercmd(self, cmd, rest=None):
            connection, size = super().ntransfercmd(cmd, rest)
            versions.append(connection.version())
            return connection, size

    digests = _random_files(tmp_path / "out", [1, 70_000, 3 << 20])
    client = Client(context=context, timeout=30)
    client.connect("127.0.0.1", running.ftp_port)
    client.login("northfield", PASSWORD)
    client.prot_p()
    try:
        for name in digests:
            with open(tmp_path / "out" / name, "rb") as handle:
                client.storbinary(f"STOR {name}", handle)
        fetched = {}
        for name in digests:
            chunks = []
            client.retrbinary(f"RETR {name}", chunks.append)
            fetched[name] = hashlib.sha256(b"".join(chunks)).hexdigest()
        assert sorted(client.nlst()) == sorted(digests)
        assert client.sock.version() == "TLSv1.3"
    finally:
        client.quit()
    assert _landed(running.home("northfield"), digests) == digests == fetched
    assert set(versions) == {"TLSv1.3"}


@pytest.mark.parametrize("version", ["--tlsv1.2", "--tlsv1.3"])
def test_curl_over_tls12_and_tls13_data_connections(running, tmp_path, version):
    digests = _random_files(tmp_path / "out", [5 << 20])
    [name] = digests
    limit = ["--tls-max", "1.2"] if version == "--tlsv1.2" else []
    uploaded = running.curl_ftps(f"/{name}", version, *limit, "-T", str(tmp_path / "out" / name), user="northfield")
    assert uploaded.returncode == 0, uploaded.stderr
    assert _landed(running.home("northfield"), digests) == digests
    downloaded = running.curl_ftps(f"/{name}", version, *limit, "-o", str(tmp_path / "back"), user="northfield")
    assert downloaded.returncode == 0, downloaded.stderr
    assert hashlib.sha256((tmp_path / "back").read_bytes()).hexdigest() == digests[name]
