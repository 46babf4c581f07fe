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
packets of this cipher are read and written by daemon/dropzone/packetizer.py, which hands
`seal` the parts of a payload: each is encrypted straight into the one buffer that goes to
the socket.
"""

import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305
from paramiko.ssh_exception import SSHException

NAME = "chacha20-poly1305@openssh.com"
TAG = 16
BLOCK = 8
"""The cipher's block size as far as packet lengths go: a multiple of 8 after the length."""
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

    def seal(self, sequence: int, payload: Sequence[bytes | memoryview]) -> bytearray:
        """The packet carrying `payload` (its parts, in order) as sent: length, padding length,
        payload and padding, encrypted into one buffer, then the tag.

        The padding is zeros, as paramiko pads its CTR ciphers: under a stream cipher whose
        nonce is never reused, what the padding held is not visible anyway."""
        size = sum(len(part) for part in payload)
        padding = 3 + BLOCK - (size + 4) % BLOCK
        length = size + 1 + padding
        out = bytearray(4 + length + TAG)
        view = memoryview(out)
        view[:4] = self._stream(self._length_key, 0, sequence, length.to_bytes(4, "big"))
        nonce = bytes(8) + sequence.to_bytes(8, "big")
        encryptor = Cipher(algorithms.ChaCha20(self._payload_key, nonce), mode=None).encryptor()
        poly_key = encryptor.update(bytes(64))[:32]
        position = 4
        for part in (padding.to_bytes(1, "big"), *payload, bytes(padding)):
            end = position + len(part)
            encryptor.update_into(part, view[position:end])
            position = end
        view[position:] = Poly1305.generate_tag(poly_key, view[:position])
        return out

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


CIPHER_INFO = {"class": ChaCha20Poly1305, "block-size": BLOCK, "key-size": 64, "iv-size": 0, "is_aead": True}
"""What paramiko's transport needs to negotiate it and hand its key to the packetizer (as an
AEAD cipher, whose algorithm object is its engine)."""
