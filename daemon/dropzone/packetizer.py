"""paramiko's packetizer and transport, with chacha20-poly1305 and packets sealed from parts.

- chacha20-poly1305@openssh.com (daemon/dropzone/chacha20_poly1305.py): paramiko reads a
  packet's length in clear even for its AEAD ciphers, so this cipher's packets are read and
  written here.
- Channel data (daemon/dropzone/channel_data.py) arrives as parts, a 9-byte header and views
  of an SFTP reply; under chacha20-poly1305 and the CTR ciphers each part is encrypted straight
  into the one buffer that goes to the socket, and the MAC is taken over that buffer. py-spy
  on a 200 MiB download had paramiko's path copying each 32 KiB packet six times (message,
  packet, padding, ciphertext, MAC input, MAC appended) and building a `Message` around it.
  AES-GCM (one call that takes the whole plaintext) and compression join the parts first.

All on the packetizer's own state (sequence numbers, keys, rekey counters: paramiko privates,
checked at start by daemon/dependency_checks.py); anything else takes paramiko's path.
"""

import hmac
import struct

import paramiko
from paramiko.common import xffffffff
from paramiko.message import Message
from paramiko.packet import Packetizer
from paramiko.ssh_exception import SSHException

from daemon.dropzone.chacha20_poly1305 import CIPHER_INFO, MAX_PACKET, NAME, TAG, ChaCha20Poly1305
from daemon.dropzone.channel_data import ChannelData


class SshPacketizer(Packetizer):
    """paramiko's packetizer, with chacha20-poly1305 and channel data sealed from its parts."""

    def send_message(self, data):
        engine = self._Packetizer__block_engine_out
        chacha = isinstance(engine, ChaCha20Poly1305)
        compress = self._Packetizer__compress_engine_out
        parts = data.parts if isinstance(data, ChannelData) and compress is None else None
        if not chacha and (parts is None or not self._Packetizer__sdctr_out):
            return super().send_message(data)
        with self._Packetizer__write_lock:
            if parts is None:  # compressed in the order sent, as paramiko does: under the lock
                payload = data.asbytes()
                parts = (payload if compress is None else compress(payload),)
            sequence = self._Packetizer__sequence_number_out
            out = engine.seal(sequence, parts) if chacha else self._seal_ctr(sequence, parts)
            following = (sequence + 1) & xffffffff
            if following == 0 and not self._initial_kex_done:
                raise SSHException("Sequence number rolled over during initial kex!")
            self._Packetizer__sequence_number_out = following
            self.write_all(out)
            self._Packetizer__sent_bytes += len(out)
            self._Packetizer__sent_packets += 1
            too_much = (
                self._Packetizer__sent_packets >= self.REKEY_PACKETS or self._Packetizer__sent_bytes >= self.REKEY_BYTES
            )
            if too_much and not self._Packetizer__need_rekey:
                self._Packetizer__received_bytes_overflow = 0
                self._Packetizer__received_packets_overflow = 0
                self._trigger_rekey()
        return None

    def _seal_ctr(self, sequence: int, parts) -> bytearray:
        """The packet carrying `parts` under a CTR cipher and its MAC, as paramiko builds it
        (zero padding to the cipher's block, the length in clear under an EtM MAC), with each
        part encrypted into the one buffer; the MAC covers the ciphertext (EtM) or the
        plaintext, which is then encrypted in place."""
        etm = self._Packetizer__etm_out
        block = self._Packetizer__block_size_out
        size = sum(len(part) for part in parts)
        padding = 3 + block - (size + (4 if etm else 8)) % block
        length = size + 1 + padding
        mac_size = self._Packetizer__mac_size_out
        out = bytearray(4 + length + mac_size)
        view = memoryview(out)
        struct.pack_into(">IB", out, 0, length, padding)
        position = 5
        for part in parts:
            view[position : position + len(part)] = part
            position += len(part)
        packet = view[: 4 + length]  # the padding: the buffer's zeros
        encryptor = self._Packetizer__block_engine_out
        mac = hmac.new(self._Packetizer__mac_key_out, struct.pack(">I", sequence), self._Packetizer__mac_engine_out)
        if etm:
            encryptor.update_into(packet[4:], packet[4:])
            mac.update(packet)
        else:
            mac.update(packet)
            encryptor.update_into(packet, packet)
        view[4 + length :] = mac.digest()[:mac_size]
        return out

    def read_message(self):
        engine = self._Packetizer__block_engine_in
        if not isinstance(engine, ChaCha20Poly1305):
            return super().read_message()
        sequence = self._Packetizer__sequence_number_in
        encrypted_length = self.read_all(4, check_rekey=True)
        packet_size = engine.length(sequence, encrypted_length)
        if not 5 <= packet_size <= MAX_PACKET or packet_size % 8:
            raise SSHException(f"Invalid packet length {packet_size}")
        packet = engine.open(sequence, encrypted_length, self.read_all(packet_size + TAG, check_rekey=False))
        padding = packet[0]
        payload = packet[1 : packet_size - padding]
        if self._Packetizer__compress_engine_in is not None:
            payload = self._Packetizer__compress_engine_in(payload)
        message = Message(payload[1:])
        message.seqno = sequence
        following = (sequence + 1) & xffffffff
        if following == 0 and not self._initial_kex_done:
            raise SSHException("Sequence number rolled over during initial kex!")
        self._Packetizer__sequence_number_in = following
        self._count_received(packet_size + TAG + 4)
        return payload[0], message

    def _count_received(self, size: int) -> None:
        """paramiko's rekey accounting for a packet read (its read_message does the same)."""
        self._Packetizer__received_bytes += size
        self._Packetizer__received_packets += 1
        if self._Packetizer__need_rekey:
            self._Packetizer__received_bytes_overflow += size
            self._Packetizer__received_packets_overflow += 1
            if (
                self._Packetizer__received_packets_overflow >= self.REKEY_PACKETS_OVERFLOW_MAX
                or self._Packetizer__received_bytes_overflow >= self.REKEY_BYTES_OVERFLOW_MAX
            ):
                raise SSHException("Remote transport is ignoring rekey requests")
        elif (
            self._Packetizer__received_packets >= self.REKEY_PACKETS
            or self._Packetizer__received_bytes >= self.REKEY_BYTES
        ):
            self._Packetizer__received_bytes_overflow = 0
            self._Packetizer__received_packets_overflow = 0
            self._trigger_rekey()


class SshTransport(paramiko.Transport):
    """paramiko's transport with `SshPacketizer`, offering chacha20-poly1305@openssh.com
    first, as OpenSSH does."""

    _preferred_ciphers = (NAME, *paramiko.Transport._preferred_ciphers)
    _cipher_info = {**paramiko.Transport._cipher_info, NAME: CIPHER_INFO}

    def __init__(self, sock, **options):
        super().__init__(sock, packetizer_class=SshPacketizer, **options)
