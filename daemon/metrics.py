"""Prometheus metrics at `[metrics] listen` (off unless set), with prometheus-client.

Counters are read from the canonical log lines the daemon writes anyway (`login.*`,
`transfer.finished`, `run.finished`, ...): one structlog processor sees every event and
counts it, so a metric and its log line can never disagree and no module counts twice.
Gauges (sessions, queue depth, outbox depth) are read from the daemon when scraped.
"""

import http.server
import threading
import time

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = structlog.get_logger("dropd.metrics")

METRICS_CLIENTS = 16
"""Scrapes served at once; a connection past it is closed at once (Prometheus tries again)."""
METRICS_IDLE_TIMEOUT = 5.0
"""A client that sends no complete request within this long is closed."""


class Metrics:
    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.logins = Counter(
            "dropd_logins", "Logins by protocol and outcome", ["protocol", "outcome"], registry=registry
        )
        self.transfers = Counter(
            "dropd_transfers", "Files transferred, by direction and status", ["direction", "status"], registry=registry
        )
        self.bytes = Counter(
            "dropd_transfer_bytes", "Bytes transferred, by direction", ["direction"], registry=registry
        )
        self.exported_bytes = Counter(
            "dropd_exported_bytes", "Bytes of export files delivered, by feed", ["feed"], registry=registry
        )
        self.runs = Counter("dropd_runs", "Finished runs, by feed and status", ["feed", "status"], registry=registry)
        self.rows = Counter(
            "dropd_rows", "Rows of finished runs, by feed and outcome", ["feed", "outcome"], registry=registry
        )
        self.durations = Histogram(
            "dropd_run_duration_seconds", "Run durations, by feed", ["feed"], registry=registry,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
        )  # fmt: skip
        self.last_success = Gauge(
            "dropd_last_success_timestamp_seconds",
            "When each feed last finished a run successfully",
            ["feed"],
            registry=registry,
        )
        self.bans = Counter("dropd_bans", "Addresses banned", registry=registry)
        self.sessions = Gauge("dropd_sessions", "Connections now, by protocol", ["protocol"], registry=registry)
        self.queue = Gauge("dropd_runs_queued", "Runs waiting to start or for the store", registry=registry)
        self.running = Gauge("dropd_runs_running", "Runs running now", registry=registry)
        self.outbox = Gauge("dropd_mail_outbox", "Mail waiting to be sent", registry=registry)
        self.failures = Counter(
            "dropd_metrics_failures", "Log events the metrics could not count, by event", ["event"], registry=registry
        )
        self._started: dict[int, float] = {}
        self._server: _MetricsServer | None = None

    # From the log lines ------------------------------------------------------------------

    def __call__(self, logger, method_name, event_dict):
        """A structlog processor: count the event, pass it on unchanged."""
        try:
            self._count(event_dict)
        except Exception:  # a metric must never cost a log line; the failure is counted instead
            self.failures.labels(str(event_dict.get("event", ""))).inc()
        return event_dict

    def _count(self, event: dict) -> None:
        name = event.get("event")
        if name == "login.succeeded":
            self.logins.labels(event.get("protocol", ""), "succeeded").inc()
        elif name == "login.failed":
            self.logins.labels(event.get("protocol", ""), "failed").inc()
        elif name == "address.banned":
            self.bans.inc()
        elif name == "transfer.finished":
            direction = event.get("direction", "")
            self.transfers.labels(direction, event.get("status", "")).inc()
            self.bytes.labels(direction).inc(event.get("size") or 0)
        elif name == "run.started" and event.get("run_id") is not None:
            self._started[event["run_id"]] = time.monotonic()
        elif name == "run.finished":
            self._run_finished(event)

    def _run_finished(self, event: dict) -> None:
        feed, status = event.get("feed", ""), event.get("status", "")
        self.runs.labels(feed, status).inc()
        if event.get("applied") is not None:
            self.rows.labels(feed, "applied").inc(event["applied"])
        if event.get("rejected"):
            self.rows.labels(feed, "rejected").inc(event["rejected"])
        if event.get("destination") and event.get("size"):
            self.exported_bytes.labels(feed).inc(event["size"])
        started = self._started.pop(event.get("run_id"), None)
        if started is not None:
            self.durations.labels(feed).observe(time.monotonic() - started)
        if status == "success":
            self.last_success.labels(feed).set(time.time())

    # From the daemon, when scraped ---------------------------------------------------------

    def watch(self, sessions, activity, store) -> None:
        """Gauges read at each scrape: `sessions()` (logged-in sessions by protocol),
        `activity()` (the runner's running and waiting runs), and the store."""
        for protocol in ("sftp", "ftp"):
            self.sessions.labels(protocol).set_function(lambda protocol=protocol: sessions().get(protocol, 0))
        self.running.set_function(lambda: len(activity()["running"]))
        self.queue.set_function(lambda: len(activity()["waiting"]) + len(store.waiting()["waiting"]))
        self.outbox.set_function(lambda: _pending_mail(store))

    def serve(self, address: tuple[str, int]) -> None:
        host, port = address
        try:
            self._server = _MetricsServer((host, port), self.registry)
        except OSError as exc:
            raise RuntimeError(f"cannot serve metrics on {host}:{port} (metrics.listen): {exc.strerror}") from exc
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        log.info("server.listening", protocol="metrics", address=f"{host}:{port}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _MetricsServer(http.server.ThreadingHTTPServer):
    """`GET /metrics` and nothing else, for at most METRICS_CLIENTS clients at once, each closed
    after METRICS_IDLE_TIMEOUT without a request. (prometheus-client's own server keeps every
    idle connection, each with a thread, and answers any path.)"""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry):
        self.registry = registry
        self._slots = threading.BoundedSemaphore(METRICS_CLIENTS)
        super().__init__(address, _MetricsRequest)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _MetricsRequest(http.server.BaseHTTPRequestHandler):
    timeout = METRICS_IDLE_TIMEOUT
    server: _MetricsServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, b"Not found: the metrics are at /metrics\n", "text/plain; charset=utf-8")
            return
        self._answer(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _refuse(self) -> None:
        self._answer(405, b"Method not allowed: GET /metrics\n", "text/plain; charset=utf-8", allow="GET, HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _answer(self, status: int, body: bytes, content_type: str, **headers) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.capitalize(), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        """Scrapes are not logged (one a few seconds, all day)."""


def _pending_mail(store) -> float:
    try:
        with store.reading() as tx:
            return tx.outbox.pending_count()
    except Exception:
        return float("nan")
