"""Channel data sent from parts, without joining them first.

paramiko's `Channel.send` takes one bytes object and copies what fits in a packet into a new
`Message`; an SFTP reply has first to be assembled into that one object (a 13-byte header
before up to 255 KiB of a file), so a download copied every byte twice before its packets were
even built. `send` walks the parts instead and hands the packetizer one `ChannelData` per
packet: the packet's 9-byte header and views of the parts. dropd's chacha20-poly1305 packetizer
encrypts those views straight into the packet it sends; any other packetizer gets the joined
bytes from `asbytes()`, as from a `Message`.

Window and packet sizes are paramiko's own (`Channel._wait_for_send_window`, under the
channel's lock, then `Transport._send_user_message`, which waits out a key exchange): the
same steps as `Channel.send`, checked at start by daemon/dependency_checks.py.
"""

import struct
from collections.abc import Iterable

from paramiko.common import cMSG_CHANNEL_DATA

_HEADER = struct.Struct(">cII")


class ChannelData:
    """One SSH_MSG_CHANNEL_DATA payload: its header, then `size` bytes in views."""

    __slots__ = ("parts",)

    def __init__(self, channel_id: int, views: list[memoryview], size: int):
        self.parts = (_HEADER.pack(cMSG_CHANNEL_DATA, channel_id, size), *views)

    def asbytes(self) -> bytes:
        return b"".join(self.parts)


def _take(views: list[memoryview], size: int) -> list[memoryview]:
    """The first `size` bytes of `views` (removed from it), as views."""
    taken = []
    while size:
        first = views[0]
        if len(first) <= size:
            taken.append(views.pop(0))
            size -= len(first)
        else:
            taken.append(first[:size])
            views[0] = first[size:]
            size = 0
    return taken


def send(channel, parts: Iterable[bytes | bytearray | memoryview]) -> None:
    """Send `parts` on `channel` as one stream of bytes, in as few packets as the peer's window
    and packet size allow; raises OSError once the channel is closed or at end of file."""
    views = [memoryview(part).cast("B") for part in parts if len(part)]
    remaining = sum(len(view) for view in views)
    while remaining:
        with channel.lock:
            if channel.closed:
                raise OSError("the channel is closed")
            size = channel._wait_for_send_window(remaining)
        if size == 0:
            raise OSError("the channel is closed")
        channel.transport._send_user_message(ChannelData(channel.remote_chanid, _take(views, size), size))
        remaining -= size
