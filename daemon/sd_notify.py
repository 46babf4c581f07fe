"""systemd's notification protocol: READY, RELOADING, STOPPING, STATUS and WATCHDOG messages.

Does nothing when NOTIFY_SOCKET is not set, so the daemon runs the same outside systemd.
"""

import os
import socket
import threading
import time

import structlog

log = structlog.get_logger("dropd.sd_notify")


class SystemdNotifier:
    def __init__(self, environ=os.environ):
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None
        watchdog_usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        wanted_here = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_interval = int(watchdog_usec) / 2e6 if watchdog_usec.isdigit() and wanted_here else None
        self._stop = threading.Event()

    def send(self, *fields: str) -> None:
        if self._address is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto("\n".join(fields).encode(), self._address)
            except OSError:
                pass

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 (Type=notify-reload).
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def keep_alive(self, probe, every: float = 15.0) -> None:
        """Every watchdog interval (else every `every` seconds) send STATUS= with `probe()`'s
        summary, and WATCHDOG=1 when there is a watchdog. `probe` looks at the servers and the
        store: a daemon that hangs there stops pinging, and systemd restarts it."""
        if self._address is None:
            return
        threading.Thread(
            target=self._keep_alive, args=(probe, self.watchdog_interval or every), name="sd-notify", daemon=True
        ).start()

    def _keep_alive(self, probe, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                status = probe()
            except Exception:
                log.exception("sd_notify.probe_failed")
                continue
            fields = ["WATCHDOG=1"] if self.watchdog_interval else []
            self.send(*fields, f"STATUS={status}")

    def stop_keep_alive(self) -> None:
        self._stop.set()
