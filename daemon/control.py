"""The local control channel: `dropd run-now` talks to the running daemon over a Unix socket.

The socket is mode 0600 in the state directory, and each peer's uid is checked
(SO_PEERCRED): only root and the service's own user may use it. One JSON request and one
JSON reply per connection; before its reply, `run-now` sends `{"progress": TEXT}` lines as the
run goes (queued, importing, delivering, a failed try and when the next is). A client that
leaves (Ctrl-C) leaves the run going.
"""

import json
import os
import queue
import socket
import struct
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import structlog

from daemon.dropzone.accept_pause import AcceptPause

log = structlog.get_logger("dropd.control")


class ControlUnavailable(Exception):
    """No daemon answers on the control socket."""


class ControlServer:
    def __init__(self, path: Path, config_source, status, bans, request_run, progress=None, reload=None):
        """`status()`: what `dropd status` shows; `bans`: the ban list; `request_run(feed,
        trigger, force)`: a run's future (the runner's `request`); `progress`: the hand-off
        runs say what they are doing on (`RunProgress`); `reload()`: re-read the config, and
        say whether it was accepted and with which errors not."""
        self.path = path
        self._config = config_source
        self._status = status
        self._bans = bans
        self._request_run = request_run
        self._progress = progress
        self._reload = reload
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
                reply = self._handle(request, connection)
            except Exception as exc:
                log.exception("control.failed")
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if reply is None:
                return  # the client left
            try:
                _send(connection, reply)
            except OSError:
                pass

    def _handle(self, request: dict, connection: socket.socket) -> dict | None:
        command = request.get("command")
        if command == "status":
            return {"ok": True, **self._status()}
        if command == "bans":
            return {"ok": True, "bans": [{"address": ban.address, "until": ban.until} for ban in self._bans.bans()]}
        if command == "reload" and self._reload is not None:
            outcome = self._reload()
            return {"ok": bool(outcome.get("accepted")), "errors": outcome.get("errors", [])}
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
        return self._run_now(name, bool(request.get("force")), float(request.get("timeout", 3600)), connection)

    def _run_now(self, name: str, force: bool, timeout: float, connection: socket.socket) -> dict | None:
        """Run the feed, sending what the run says it does as it goes; None when the client
        left before the end (the run goes on)."""
        said: queue.Queue[str] = queue.Queue()

        def heard(event: tuple[str, str]) -> None:
            feed, text = event
            if feed == name:
                said.put(text)

        if self._progress is not None:
            self._progress.subscribe(heard)
        try:
            future = self._request_run(name, "run-now", force=force)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    records = future.result(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
                except FutureTimeout:
                    records = None
                if not _relay(said, connection):
                    log.info("control.client_left", feed=name)
                    return None
                if records is not None:
                    return {"ok": True, "runs": [record.as_dict() for record in records]}
                if time.monotonic() >= deadline:
                    return {"ok": True, "runs": [], "message": "the run is still going; see `dropd runs`"}
        finally:
            if self._progress is not None:
                self._progress.unsubscribe(heard)

    def stop(self) -> None:
        self._stop.set()
        if self._socket is not None:
            self._socket.close()
            self.path.unlink(missing_ok=True)


def _send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def _relay(said: queue.Queue, connection: socket.socket) -> bool:
    """Send what was said so far; False when the client has gone."""
    while True:
        try:
            text = said.get_nowait()
        except queue.Empty:
            return True
        try:
            _send(connection, {"progress": text})
        except OSError:
            return False


def send_command(path: Path, request: dict, timeout: float, on_progress=None) -> dict:
    """The daemon's reply to `request`; `on_progress(text)` hears each progress line before it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlUnavailable(f"dropd is not running (nothing answers on {path})") from None
        _send(client, request)
        replies = client.makefile("r")
        while True:
            line = replies.readline()
            if not line:
                raise ControlUnavailable(f"the daemon closed the control connection on {path} without answering")
            message = json.loads(line)
            if "progress" not in message:
                return message
            if on_progress is not None:
                on_progress(message["progress"])
