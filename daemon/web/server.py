"""The console's listener: uvicorn, in one thread of the daemon, with its own event loop.

uvicorn (rather than a thread-per-connection WSGI server) because it is the ASGI server
Starlette is built for, it serves any number of idle connections from one thread, and it
runs inside our process without owning its signals (it installs none outside the main
thread; the daemon's own SIGTERM stops it through `stop`).

What uvicorn does not bound, we do here (`_BoundedH11`), so that no client can hold the
console: a connection must deliver a whole request within `request_timeout` (uvicorn only
times out idle keep-alive connections, never one that sends half a request line and waits),
and connections past WEB_CONNECTIONS are closed at once. Headers are capped at 16 KiB;
bodies by the application's guard.
"""

import asyncio
import logging
import socket
import threading

import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from daemon.config.web import WebSettings

log = structlog.get_logger("dropd.web")

WEB_CONNECTIONS = 100
"""Connections served at once; more are closed as they come (a browser opens about six)."""
REQUEST_TIMEOUT = 10.0
"""Seconds a connection has to deliver a whole request, from connect or its last answer."""
KEEP_ALIVE = 5
MAX_HEADER_BYTES = 16384


class _BoundedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline per request and a cap on connections.
    Relies on uvicorn's `connections`, `cycle` and `on_response_complete` (uvicorn ~= 0.55;
    checked by daemon/dependency_checks.py)."""

    request_timeout = REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > WEB_CONNECTIONS:
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._deadline_passed)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        cycle = self.cycle
        still_receiving = cycle is None or cycle.response_complete or cycle.more_body
        if still_receiving and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


class WebServer:
    def __init__(self, settings: WebSettings, app, request_timeout: float = REQUEST_TIMEOUT):
        self.settings = settings
        self.app = app
        self.request_timeout = request_timeout
        self.address: tuple[str, int] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (an error here stops the daemon's start, naming `web.listen`), then serve."""
        host, port = self.settings.listen
        # IPPROTO_TCP named, not 0: asyncio turns Nagle off only on sockets whose proto says TCP,
        # and with Nagle on, every answer after the first on a keep-alive connection waits 40 ms
        # for the client's delayed ACK (headers and body are two writes).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"cannot serve the web console on {host}:{port} (web.listen): {exc.strerror}") from exc
        sock.set_inheritable(False)
        self.address = sock.getsockname()[:2]
        protocol = type("_Protocol", (_BoundedH11,), {"request_timeout": self.request_timeout})
        trusted = list(self.settings.trusted_proxies)
        config = uvicorn.Config(
            self.app, http=protocol, ws="none", lifespan="off", log_config=None, access_log=False,
            server_header=False, proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None,
            limit_concurrency=WEB_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            ssl_certfile=str(self.settings.certfile) if self.settings.certfile else None,
            ssl_keyfile=str(self.settings.keyfile) if self.settings.keyfile else None,
        )  # fmt: skip
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._server = uvicorn.Server(config)
        started = threading.Event()

        def serve() -> None:
            asyncio.run(self._serve(sock, started))

        self._thread = threading.Thread(target=serve, name="web", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"the web console did not start on {host}:{port}")
        scheme = "https" if self.settings.tls else "http"
        log.info("server.listening", protocol="web", address=f"{self.address[0]}:{self.address[1]}", scheme=scheme)

    async def _serve(self, sock: socket.socket, started: threading.Event) -> None:
        server = self._server
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        started.set()
        await serving

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
