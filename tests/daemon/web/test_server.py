"""The console's listener in-process: its connections have Nagle's algorithm off."""

import socket
import time

from daemon.config.web import WebSettings
from daemon.web.server import WebServer
from tests.helpers import free_port


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_accepted_connections_have_nagle_off():
    """With Nagle on, each answer after the first on a keep-alive connection waited 40 ms for the
    client's delayed ACK (headers and body are two writes): asyncio turns it off only on sockets
    whose proto says TCP, and the listener was made with proto 0."""
    settings = WebSettings(listen=("127.0.0.1", free_port()), base_url="", session_lifetime=3600.0, certfile=None,
                           keyfile=None, trusted_proxies=())  # fmt: skip
    server = WebServer(settings, app)
    server.start()
    try:
        with socket.create_connection(settings.listen, timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(1024).startswith(b"HTTP/1.1 200")
            deadline = time.monotonic() + 5
            while not server._server.server_state.connections and time.monotonic() < deadline:
                time.sleep(0.01)
            [connection] = list(server._server.server_state.connections)
            accepted = connection.transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.stop()
