"""The SFTP server, driven by OpenSSH sftp, curl and paramiko against the running daemon."""

import io
import os
import socket
import stat
import subprocess

import paramiko
import pytest

from tests.helpers import PASSWORD


@pytest.fixture
def running(dropd, client_key):
    dropd.add_partner("northfield", keys=[client_key.public])
    dropd.add_partner("westbrook")
    dropd.start()
    return dropd


def test_openssh_sftp_batch_with_key_does_every_operation(running, client_key, tmp_path):
    local = tmp_path / "StudentData_2026_11_23.csv"
    local.write_bytes(b"id,name\n1,Ada\n" * 1000)
    batch = "\n".join(
        [
            "mkdir /imports",
            f"put {local} /imports/StudentData_2026_11_23.csv",
            "ls -l /imports",
            "chmod 640 /imports/StudentData_2026_11_23.csv",
            f"get /imports/StudentData_2026_11_23.csv {tmp_path / 'back.csv'}",
            "rename /imports/StudentData_2026_11_23.csv /imports/renamed.csv",
            "rm /imports/renamed.csv",
            "mkdir /imports/sub",
            "rmdir /imports/sub",
            "ls /",
        ]
    )
    result = running.openssh_sftp("northfield", client_key, batch)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back.csv").read_bytes() == local.read_bytes()
    home = running.home("northfield")
    assert sorted(os.listdir(home / "imports")) == []
    uploads = running.wait_for("upload.completed", partner="northfield", protocol="sftp")
    assert uploads[0]["path"] == "/imports/StudentData_2026_11_23.csv"
    assert uploads[0]["size"] == local.stat().st_size
    running.wait_for("session.closed", partner="northfield", protocol="sftp", uploads=1, downloads=1)


def test_paramiko_client_stat_setstat_listdir(running):
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        sftp.putfo(io.BytesIO(b"x" * 70000), "/data.csv")
        attributes = sftp.stat("/data.csv")
        assert attributes.st_size == 70000 and stat.S_ISREG(attributes.st_mode)
        sftp.utime("/data.csv", (1_600_000_000, 1_600_000_000))
        assert sftp.stat("/data.csv").st_mtime == 1_600_000_000
        sftp.truncate("/data.csv", 10)
        assert sftp.stat("/data.csv").st_size == 10
        assert sftp.listdir("/") == ["data.csv"]
        assert sftp.normalize(".") == "/"
        with pytest.raises(IOError):
            sftp.symlink("/etc/passwd", "/link")
        with pytest.raises(IOError):
            sftp.rename("/missing.csv", "/other.csv")


def test_curl_sftp_upload_and_download(running, tmp_path):
    local = tmp_path / "list.csv"
    local.write_text("email\na@example.org\n")
    url = f"sftp://127.0.0.1:{running.sftp_port}/list.csv"
    common = ["--insecure", "--user", "westbrook:correct horse battery"]
    assert running.curl(*common, "-T", str(local), url).returncode == 0
    fetched = running.curl(*common, url)
    assert fetched.returncode == 0 and fetched.stdout == local.read_text()
    running.wait_for("upload.completed", partner="westbrook", path="/list.csv")


def test_filepart_upload_hands_off_only_the_final_name(running):
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        sftp.putfo(io.BytesIO(b"a,b\n1,2\n"), "/StudentData.csv.filepart")
        sftp.posix_rename("/StudentData.csv.filepart", "/StudentData.csv")
    completed = running.wait_for("upload.completed", partner="westbrook")
    assert [event["path"] for event in completed] == ["/StudentData.csv"]
    assert (running.home("westbrook") / "StudentData.csv").read_bytes() == b"a,b\n1,2\n"


def test_killed_client_leaves_no_file_and_no_temporary(running):
    sock = socket.create_connection(("127.0.0.1", running.sftp_port))
    transport = paramiko.Transport(sock)
    transport.connect(username="westbrook", password="correct horse battery")
    sftp = paramiko.SFTPClient.from_transport(transport)
    handle = sftp.open("/half.csv", "wb")
    handle.write(b"x" * 300_000)
    handle.flush()
    # Drop the TCP connection without closing the file, as a crashed client would.
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    running.wait_for("transfer.finished", partner="westbrook", status="aborted")
    assert os.listdir(running.home("westbrook")) == []
    assert not running.find("upload.completed")


def test_partners_are_isolated(running, client_key):
    (running.home("westbrook") / "secret.csv").write_text("westbrook only")
    transport, sftp = running.paramiko_sftp("northfield", key=client_key.pkey)
    with transport:
        assert sftp.listdir("/") == []
        for path in ("/../westbrook/secret.csv", "../westbrook/secret.csv", "/../../../etc/passwd"):
            with pytest.raises(IOError):
                sftp.stat(path)


def test_path_escapes_are_refused(running, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_text("not yours")
    os.symlink(outside, running.home("westbrook") / "escape")
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        with pytest.raises(PermissionError):
            sftp.listdir("/escape")
        with pytest.raises(PermissionError):
            sftp.open("/escape/target.txt").read()
        with pytest.raises(PermissionError):
            sftp.putfo(io.BytesIO(b"x"), "/escape/new.txt")
        with pytest.raises(IOError):
            sftp.stat("/a\x00b")
        with pytest.raises(IOError):
            sftp.putfo(io.BytesIO(b"x"), "/" + "n" * 300)
        assert sftp.normalize("/../../..") == "/"
    assert sorted(os.listdir(outside)) == ["target.txt"]


RESERVED = ".dropd-0123456789abcdef.upload"


def test_reserved_names_and_the_home_itself_are_refused(running, client_key):
    home = running.home("northfield")
    (home / "visible.csv").write_bytes(b"x")
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        sftp.mkdir("/folder")
        for attempt in (
            lambda: sftp.mkdir(f"/{RESERVED}"),
            lambda: sftp.mkdir(f"/folder/{RESERVED}"),
            lambda: sftp.rename("/folder", f"/{RESERVED}"),
            lambda: sftp.posix_rename("/folder", f"/{RESERVED}"),
            lambda: sftp.rmdir("/"),
            lambda: sftp.rename("/", "/elsewhere"),
            lambda: sftp.chmod("/", 0o777),
        ):
            with pytest.raises(PermissionError):
                attempt()
    home = running.home("westbrook")
    assert home.is_dir() and sorted(os.listdir(home)) == ["folder"]
    assert stat.S_IMODE(home.stat().st_mode) & 0o007 == 0
    result = running.openssh_sftp("northfield", client_key, f"mkdir /{RESERVED}\nrmdir /\n")
    assert result.returncode != 0
    assert sorted(os.listdir(running.home("northfield"))) == ["visible.csv"]


def test_chmod_never_opens_a_file_to_other_users(running):
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        with sftp.open("/a.csv", "wb") as handle:
            handle.write(b"x")
        sftp.chmod("/a.csv", 0o777)
    assert stat.S_IMODE((running.home("westbrook") / "a.csv").stat().st_mode) == 0o770


def test_openssh_uses_the_limits_we_announce_and_transfers_stay_exact(running, client_key, tmp_path):
    """limits@openssh.com lets OpenSSH write and read 255 KiB at a time, as with sshd."""
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(5 * 2**20 + 12345))
    command = [
        "sftp", "-vvv", "-b", "-", "-P", str(running.sftp_port), "-i", str(client_key.path),
        "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "northfield@127.0.0.1",
    ]  # fmt: skip
    batch = f"put {local} /big.bin\nget /big.bin {tmp_path / 'back.bin'}\n"
    result = subprocess.run(command, input=batch, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "server upload/download buffer sizes 261120 / 261120; using 261120 / 261120" in result.stderr
    assert "posix-rename@openssh.com" in result.stderr
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    assert (running.home("northfield") / "big.bin").read_bytes() == local.read_bytes()


def test_forty_connections_in_a_row_never_hang(running, client_key):
    for number in range(40):
        transport, sftp = running.paramiko_sftp("northfield", key=client_key.pkey)
        with transport:
            with sftp.open(f"/n{number}.bin", "wb") as handle:
                handle.write(bytes([number]) * 70_000)
            assert sftp.open(f"/n{number}.bin").read() == bytes([number]) * 70_000


def test_rclone_and_lftp_over_sftp_move_files_exactly(running, client_key, tmp_path):
    sizes = [1, 32768, 32769, 261_120, 261_121, 3 * 2**20 + 5]
    out = tmp_path / "out"
    out.mkdir()
    for size in sizes:
        (out / f"f{size}.bin").write_bytes(os.urandom(size))
    remote = (
        f":sftp,host=127.0.0.1,port={running.sftp_port},user=northfield,key_file={client_key.path},"
        "disable_hashcheck=true:"
    )
    for source, target in ((str(out), remote + "/rclone"), (remote + "/rclone", str(tmp_path / "rclone-back"))):
        result = subprocess.run(["rclone", "copy", "--config", "/dev/null", source, target],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
    ssh = f"ssh -a -x -i {client_key.path} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes"
    script = "; ".join(
        [f"set sftp:connect-program '{ssh}'", "mkdir -p lftp"]
        + [f"put {out / f'f{size}.bin'} -o lftp/f{size}.bin" for size in sizes]
        + [f"get lftp/f{size}.bin -o {tmp_path / 'lftp-back' / f'f{size}.bin'}" for size in sizes]
        + ["bye"]
    )
    (tmp_path / "lftp-back").mkdir()
    result = subprocess.run(["lftp", "-u", "northfield,", "-p", str(running.sftp_port), "-e", script, "sftp://127.0.0.1"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    home = running.home("northfield")
    for size in sizes:
        original = (out / f"f{size}.bin").read_bytes()
        for copy in (home / "rclone", tmp_path / "rclone-back", home / "lftp", tmp_path / "lftp-back"):
            assert (copy / f"f{size}.bin").read_bytes() == original, (copy, size)


def test_setstat_may_shrink_a_file_but_never_grow_it_sparse(running):
    """SETSTAT with a size made a published file (or an upload being written) 10 GiB of holes."""
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        sftp.putfo(io.BytesIO(b"x" * 1000), "/data.csv")
        with pytest.raises(PermissionError, match="a file cannot be grown by setting its size"):
            sftp.truncate("/data.csv", 10 << 30)
        with sftp.open("/upload.csv", "wb") as handle:
            handle.write(b"y" * 100)
            with pytest.raises(PermissionError, match="a file cannot be grown by setting its size"):
                handle.truncate(10 << 30)
            handle.truncate(50)
        sftp.truncate("/data.csv", 1000)
        sftp.truncate("/data.csv", 10)
    home = running.home("westbrook")
    assert (home / "data.csv").stat().st_size == 10 and (home / "upload.csv").read_bytes() == b"y" * 50
    assert os.statvfs(home).f_bfree > 0


def test_a_path_that_is_not_utf8_is_refused_in_one_line(running):
    """paramiko could not decode it: a traceback in the log for every such request."""
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        for _ in range(20):
            with pytest.raises(OSError, match="not valid UTF-8"):
                sftp._request(paramiko.sftp.CMD_STAT, b"/caf\xe9.csv")
        assert sftp.listdir("/") == []
    lines = [event for event in running.events() if "exception" in event]
    assert lines == []
    assert len(running.find("sftp.request_refused", reason="path-not-utf8")) == 1


@pytest.mark.parametrize("size", [10, 70_000, 3 << 20])
def test_check_file_answers_the_true_hash(running, size):
    """paramiko's own answer was wrong past 64 KiB, and it knew no SHA-256."""
    import hashlib

    content = os.urandom(size)
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        sftp.putfo(io.BytesIO(content), "/data.bin")
        with sftp.open("/data.bin", "rb") as handle:
            assert handle.check("sha256") == hashlib.sha256(content).digest()
            assert handle.check("md5") == hashlib.md5(content).digest()
            halves = handle.check("sha1", 0, 0, max(256, size // 2 + 1))
        step = max(256, size // 2 + 1)
        assert halves == b"".join(hashlib.sha1(content[at : at + step]).digest() for at in range(0, size, step))


def test_a_read_gets_at_most_what_limits_announce(running):
    """paramiko's server read whatever length a READ asked, up to 4 GiB into memory at once;
    sshd answers at most the 255 KiB it announces, and so do we."""
    content = os.urandom(3 << 20)
    transport, sftp = running.paramiko_sftp("westbrook")
    with transport:
        sftp.putfo(io.BytesIO(content), "/big.bin")
        with sftp.open("/big.bin", "rb") as handle:
            for offset, length in ((0, 4 << 20), (12345, 0xFFFFFFFF), (len(content) - 10, 1 << 20)):
                kind, reply = sftp._request(paramiko.sftp.CMD_READ, handle.handle, paramiko.sftp.int64(offset), length)
                assert kind == paramiko.sftp.CMD_DATA
                assert reply.get_string() == content[offset : offset + 261120]
            with pytest.raises(EOFError):
                sftp._request(paramiko.sftp.CMD_READ, handle.handle, paramiko.sftp.int64(len(content)), 1000)


@pytest.mark.parametrize("cipher", ["chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-gcm@openssh.com"])
def test_downloads_fit_a_small_window_and_odd_packets(running, cipher):
    """A reply's header and data go out as parts cut to the client's window and packet size
    (daemon/dropzone/channel_data.py): a client announcing a 40,000-byte window and 9,000-byte
    packets gets the file exactly, whichever cipher seals the packets."""
    from daemon.dropzone.packetizer import SshTransport

    content = os.urandom((2 << 20) + 777)
    sock = socket.create_connection(("127.0.0.1", running.sftp_port), timeout=30)
    others = [name for name in SshTransport._preferred_ciphers if name != cipher]
    transport = SshTransport(sock, disabled_algorithms={"ciphers": others})
    with transport:
        transport.connect(username="westbrook", password=PASSWORD)
        assert transport.remote_cipher == cipher
        sftp = paramiko.SFTPClient.from_transport(transport, window_size=40_000, max_packet_size=9_000)
        sftp.putfo(io.BytesIO(content), "/odd.bin")
        with sftp.open("/odd.bin", "rb") as handle:
            handle.prefetch()
            assert handle.read() == content
        sftp.close()


@pytest.mark.parametrize("mac", ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512"])
def test_openssh_downloads_under_ctr_with_either_kind_of_mac(running, client_key, tmp_path, mac):
    """Under a CTR cipher a download's packets are sealed from their parts by our packetizer:
    the MAC over the ciphertext (EtM) or over the plaintext, as OpenSSH checks it."""
    content = os.urandom((3 << 20) + 4321)
    (running.home("northfield") / "down.bin").write_bytes(content)
    command = [
        "sftp", "-v", "-b", "-", "-P", str(running.sftp_port), "-i", str(client_key.path), "-c", "aes256-ctr",
        "-o", f"MACs={mac}", "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "northfield@127.0.0.1",
    ]  # fmt: skip
    result = subprocess.run(
        command, input=f"get /down.bin {tmp_path / 'back.bin'}\n", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"kex: server->client cipher: aes256-ctr MAC: {mac}" in result.stderr
    assert (tmp_path / "back.bin").read_bytes() == content
