"""chacha20-poly1305@openssh.com: OpenSSH's `sftp` and paramiko as clients, both directions,
across rekeys; a tampered packet is refused."""

import hashlib
import os
import socket
import subprocess

import paramiko
import pytest
from paramiko.ssh_exception import SSHException

from daemon.dropzone.chacha20_poly1305 import NAME, ChaCha20Poly1305
from daemon.dropzone.packetizer import SshTransport
from tests.helpers import PASSWORD


def sftp_verbose(dropd, key, batch: str, *options: str) -> subprocess.CompletedProcess:
    command = [
        "sftp", "-v", "-b", "-", "-P", str(dropd.sftp_port), "-i", str(key.path), *options,
        "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={dropd.root / 'known_hosts'}",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "northfield@127.0.0.1",
    ]  # fmt: skip
    return subprocess.run(command, input=batch, capture_output=True, text=True, timeout=120)


@pytest.fixture
def serving(dropd, client_key):
    dropd.add_partner("northfield", keys=[client_key.public])  # and the password
    dropd.start()
    return dropd


@pytest.mark.parametrize("options", [(), ("-c", NAME)], ids=["default client", "asked for"])
def test_openssh_sftp_uses_chacha20_both_ways_across_a_rekey(serving, client_key, tmp_path, options):
    data = os.urandom(6 * 1024 * 1024)
    (tmp_path / "up.bin").write_bytes(data)
    batch = f"put {tmp_path / 'up.bin'} /big.bin\nget /big.bin {tmp_path / 'down.bin'}\n"
    result = sftp_verbose(serving, client_key, batch, *options, "-o", "RekeyLimit=1M")
    assert result.returncode == 0, result.stderr
    assert f"kex: server->client cipher: {NAME}" in result.stderr
    assert f"kex: client->server cipher: {NAME}" in result.stderr
    assert result.stderr.count("SSH2_MSG_NEWKEYS received") > 2, "the client rekeyed (RekeyLimit=1M)"
    assert (serving.home("northfield") / "big.bin").read_bytes() == data
    assert hashlib.sha256((tmp_path / "down.bin").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_paramiko_as_client_with_chacha20_and_a_server_side_rekey(serving):
    sock = socket.create_connection(("127.0.0.1", serving.sftp_port), timeout=30)
    transport = SshTransport(sock, disabled_algorithms={"ciphers": [c for c in SshTransport._preferred_ciphers
                                                                       if c != NAME]})  # fmt: skip
    transport.packetizer.REKEY_BYTES = 1024 * 1024  # this side asks for new keys every MiB
    with transport:
        transport.start_client(timeout=30)
        transport.auth_password("northfield", PASSWORD)
        assert transport.remote_cipher == transport.local_cipher == NAME
        sftp = paramiko.SFTPClient.from_transport(transport)
        data = os.urandom(5 * 1024 * 1024)
        with sftp.open("/paramiko.bin", "wb") as handle:
            handle.write(data)
        with sftp.open("/paramiko.bin", "rb") as handle:
            assert handle.read() == data
        sftp.close()
    assert (serving.home("northfield") / "paramiko.bin").read_bytes() == data


def test_a_tampered_packet_is_refused_and_a_good_one_opens():
    key = os.urandom(64)
    sender, receiver = ChaCha20Poly1305(key), ChaCha20Poly1305(key)
    packet = (16).to_bytes(4, "big") + bytes([7]) + b"payload!" + bytes(7)
    sealed = bytes(sender.seal(42, [b"pay", memoryview(b"load!")]))  # parts, as a ChannelData's
    assert receiver.length(42, sealed[:4]) == 16
    assert receiver.open(42, sealed[:4], sealed[4:]) == packet[4:]
    for position in (0, 5, len(sealed) - 1):  # the length, the payload, the tag
        tampered = bytearray(sealed)
        tampered[position] ^= 1
        with pytest.raises(SSHException, match="Mismatched MAC"):
            receiver.open(42, bytes(tampered[:4]), bytes(tampered[4:]))
    with pytest.raises(SSHException):  # another sequence number: another nonce
        receiver.open(43, sealed[:4], sealed[4:])
