"""The local control channel: `dropd run-now` talks to the running daemon over a Unix socket.

The socket is mode 0600 in the state directory, and each peer's uid is checked
(SO_PEERCRED): only root and the service's own user may use it. One JSON request and one
JSON reply per connection.
"""

import json
import os
import socket
import struct
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import structlog

from daemon.dropzone.accept_pause import AcceptPause

log = structlog.get_logger("dropd.control")


class ControlUnavailable(Exception):
    """No daemon answers on the control socket."""


class ControlServer:
    def __init__(self, path: Path, config_source, status, bans, request_run):
        """`status()`: what `dropd status` shows; `bans`: the ban list; `request_run(feed,
        trigger, force)`: a run's future (the runner's `request`)."""
        self.path = path
        self._config = config_source
        self._status = status
        self._bans = bans
        self._request_run = request_run
        self._socket = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            server.bind(str(self.path))
        finally:
            os.umask(old_umask)
        server.listen(16)
        self._socket = server
        threading.Thread(target=self._accept, name="control", daemon=True).start()

    def _accept(self) -> None:
        pause = AcceptPause("control")
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError as exc:
                if self._stop.is_set():
                    return
                pause.failed(exc)  # out of descriptors: `dropd status` must answer again once they are back
                continue
            pause.succeeded()
            try:
                threading.Thread(target=self._serve, args=(connection,), name="control-client", daemon=True).start()
            except RuntimeError as exc:  # no thread to spare: this request is refused, the next is served
                log.warning("control.refused", reason="no-thread", error=str(exc))
                connection.close()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", credentials)
            if uid not in (0, os.getuid()):
                log.warning("control.refused", uid=uid)
                _send(connection, {"ok": False, "error": "only root and the service user may control dropd"})
                return
            try:
                request = json.loads(connection.makefile("r").readline())
                reply = self._handle(request)
            except Exception as exc:
                log.exception("control.failed")
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            try:
                _send(connection, reply)
            except OSError:
                pass

    def _handle(self, request: dict) -> dict:
        command = request.get("command")
        if command == "status":
            return {"ok": True, **self._status()}
        if command == "bans":
            return {"ok": True, "bans": [{"address": ban.address, "until": ban.until} for ban in self._bans.bans()]}
        if command == "unban":
            address = str(request.get("address", ""))
            if not self._bans.unban(address):
                return {"ok": False, "error": f"{address} is not banned"}
            return {"ok": True}
        if request.get("command") != "run-now":
            return {"ok": False, "error": f"unknown command {request.get('command')!r}"}
        name = request.get("feed", "")
        try:
            partner, feed = self._config().feed(name)
        except KeyError:
            return {"ok": False, "error": f"no feed named {name!r}"}
        if not partner.runs(feed):
            return {"ok": False, "error": f"feed {name!r} is disabled (enabled = false in {partner.source})"}
        log.info("control.run_now", feed=name, force=bool(request.get("force")))
        future = self._request_run(name, "run-now", force=bool(request.get("force")))
        try:
            records = future.result(timeout=float(request.get("timeout", 3600)))
        except FutureTimeout:
            return {"ok": True, "runs": [], "message": "the run is still going; see `dropd runs`"}
        return {"ok": True, "runs": [record.as_dict() for record in records]}

    def stop(self) -> None:
        self._stop.set()
        if self._socket is not None:
            self._socket.close()
            self.path.unlink(missing_ok=True)


def _send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def send_command(path: Path, request: dict, timeout: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlUnavailable(f"dropd is not running (nothing answers on {path})") from None
        _send(client, request)
        line = client.makefile("r").readline()
    if not line:
        raise ControlUnavailable(f"the daemon closed the control connection on {path} without answering")
    return json.loads(line)
