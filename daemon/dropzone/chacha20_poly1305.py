"""chacha20-poly1305@openssh.com for paramiko: the cipher OpenSSH's clients offer first.

paramiko implements the AES-GCM AEAD ciphers (paramiko issue #982) but not this one, so every
default OpenSSH client fell back to AES with dropd (and clients without AES-NI are slow
with AES). Built on `cryptography`'s ChaCha20 and Poly1305, as OpenSSH's
PROTOCOL.chacha20poly1305 specifies it:

- the 64-byte key is two ChaCha20 keys: K_2 (its first 32 bytes) for the payload, K_1 (the
  last 32) for the 4-byte packet length, which is encrypted too;
- the nonce is the packet's sequence number (64 bits, big-endian), with a 64-bit block
  counter: 0 for the length and for the Poly1305 key (the first 32 bytes of K_2's block 0),
  1 onwards for the payload;
- the 16-byte Poly1305 tag covers the encrypted length and the encrypted payload.

paramiko's packetizer reads a packet's length in clear even for its AEAD ciphers, so the
chacha20 path of `send_message` and `read_message` is our own (`ChaChaPacketizer`), on the
packetizer's own state (sequence numbers, rekey counters: paramiko privates, checked at start
by daemon/dependency_checks.py); every other cipher takes paramiko's path unchanged.
"""

import struct

import paramiko
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305
from paramiko.common import xffffffff
from paramiko.message import Message
from paramiko.packet import Packetizer
from paramiko.ssh_exception import SSHException

NAME = "chacha20-poly1305@openssh.com"
TAG = 16
MAX_PACKET = 256 * 1024
"""The largest packet accepted, as OpenSSH's PACKET_MAX_SIZE: a length past it is an attack
or garbage, refused before anything that long is read."""


class ChaCha20Poly1305:
    """One direction's keys; `seal` and `open` take the packet's sequence number."""

    def __init__(self, key: bytes):
        if len(key) != 64:
            raise ValueError("chacha20-poly1305@openssh.com takes a 64-byte key")
        self._payload_key, self._length_key = key[:32], key[32:]

    @staticmethod
    def _stream(key: bytes, counter: int, sequence: int, data: bytes) -> bytes:
        nonce = counter.to_bytes(8, "little") + sequence.to_bytes(8, "big")
        return Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor().update(data)

    def _payload(self, sequence: int, data: bytes) -> tuple[bytes, bytes]:
        """(the Poly1305 key, `data` en- or decrypted): one pass of K_2's stream from block 0,
        whose first 32 bytes are the key; the data starts at block 1."""
        out = self._stream(self._payload_key, 0, sequence, bytes(64) + data)
        return out[:32], out[64:]

    def seal(self, sequence: int, packet: bytes) -> bytes:
        """`packet` (length, padding length, payload, padding) as sent: encrypted, tagged."""
        length = self._stream(self._length_key, 0, sequence, packet[:4])
        poly_key, body = self._payload(sequence, packet[4:])
        return length + body + Poly1305.generate_tag(poly_key, length + body)

    def length(self, sequence: int, encrypted_length: bytes) -> int:
        return struct.unpack(">I", self._stream(self._length_key, 0, sequence, encrypted_length))[0]

    def open(self, sequence: int, encrypted_length: bytes, rest: bytes) -> bytes:
        """The packet after its length (padding length, payload, padding), once its tag is
        checked; SSHException when it does not match."""
        body, tag = rest[:-TAG], rest[-TAG:]
        poly_key, plain = self._payload(sequence, body)
        try:
            Poly1305.verify_tag(poly_key, encrypted_length + body, tag)
        except InvalidSignature:
            raise SSHException("Mismatched MAC") from None
        return plain


CIPHER_INFO = {"class": ChaCha20Poly1305, "block-size": 8, "key-size": 64, "iv-size": 0, "is_aead": True}
"""What paramiko's transport needs to negotiate it and hand its key to the packetizer (as an
AEAD cipher, whose algorithm object is its engine)."""


class ChaChaPacketizer(Packetizer):
    """paramiko's packetizer, with the chacha20-poly1305 path when that cipher is in use."""

    def send_message(self, data):
        engine = self._Packetizer__block_engine_out
        if not isinstance(engine, ChaCha20Poly1305):
            return super().send_message(data)
        data = data.asbytes()
        with self._Packetizer__write_lock:
            if self._Packetizer__compress_engine_out is not None:
                data = self._Packetizer__compress_engine_out(data)
            sequence = self._Packetizer__sequence_number_out
            out = engine.seal(sequence, self._build_packet(data))
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


class ChaChaTransport(paramiko.Transport):
    """A transport that offers chacha20-poly1305@openssh.com first, as OpenSSH does."""

    _preferred_ciphers = (NAME, *paramiko.Transport._preferred_ciphers)
    _cipher_info = {**paramiko.Transport._cipher_info, NAME: CIPHER_INFO}

    def __init__(self, sock, **options):
        super().__init__(sock, packetizer_class=ChaChaPacketizer, **options)
