"""Whether the client at the other end of a connection is still there, without reading from it."""

import select
import socket


def peer_gone(sock: socket.socket) -> bool:
    """True when the client has closed the connection (or it broke, or we closed it): the
    socket is readable and a peek finds the end of the stream. Never waits, whatever the
    socket's timeout (paramiko gives its sockets one, which would make a plain peek wait)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
