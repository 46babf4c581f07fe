"""The daemon's life: start the servers, react to signals, reload, and stop gracefully.

The servers talk to a `DropZone` (logins, bans, sessions), the feeds to the runner and the
store; the daemon holds them together. A reload builds a complete new config and gatekeeper
first and swaps them in one assignment each; connected sessions keep the partner they
logged in as.
"""

import os
import select
import signal
import threading
import time

import structlog

from daemon.artefacts import ArtefactPruner
from daemon.clock import utc_stamp
from daemon.config.settings import Config, ConfigInvalid, load_config
from daemon.control import ControlServer
from daemon.dependency_checks import unmet
from daemon.dropzone.ftp_server import FtpServer
from daemon.dropzone.gatekeeper import BanList, Connections, Gatekeeper, LastLogins, RateLimitedLog
from daemon.dropzone.handoff import UploadHandoff
from daemon.dropzone.passwords import Verifier
from daemon.dropzone.sftp_server import SftpServer
from daemon.dropzone.shared_bans import SharedBans
from daemon.dropzone.tls_certificates import ensure_self_signed
from daemon.dropzone.uploads import TransferCounter
from daemon.dropzone.zone import DropZone
from daemon.feeds.arrivals import Arrivals
from daemon.feeds.landing import archive_dir, feed_folders, landed_files, landing_dir
from daemon.feeds.leases import LeaseKeeper
from daemon.instance_lock import AlreadyRunning, InstanceLock
from daemon.notify.alerts import AlertMonitor, Alerts, extra_recipients
from daemon.notify.mailer import Mailer, smtp_server
from daemon.notify.sender import MailSender
from daemon.runner import FeedRunner
from daemon.runs.lifecycle import RunContext, RunFinished, RunProgress
from daemon.scheduler import FeedScheduler, claim_slot, has_claims
from daemon.sd_notify import SystemdNotifier
from daemon.store import open_store
from daemon.store.records import SchemaError
from daemon.store.sqlite import SqliteStore
from daemon.web.app import build_app
from daemon.web.auth import StaffAuth
from daemon.web.server import WebServer
from daemon.web.views import Console

log = structlog.get_logger("dropd.service")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


class Daemon:
    def __init__(self, config: Config, metrics=None):
        self.config = config
        self.metrics = metrics
        """A `daemon.metrics.Metrics` when `[metrics] listen` is set."""
        self.bans = BanList(config.security)
        self.verifier = Verifier()
        self.logins = LastLogins()
        self._reloading = threading.Lock()
        """One reload at a time: SIGHUP (the main thread) and `dropd reload` (the control socket)."""
        self.store_unreachable: dict | None = None
        """Since when (and why) the store could not be read, while it cannot (for `dropd status`)."""
        self.last_reload: dict | None = None
        """When the config was last re-read, and the errors when it was rejected (for `dropd status`)."""
        self.refusals = RateLimitedLog()
        self.connections = Connections(config.security, self.bans, self.refusals)
        self.handoff = UploadHandoff()
        self.transfers = TransferCounter()
        self.zone = DropZone(
            config.daemon.drop_root, config.security, Gatekeeper(config.partners, self.bans, self.verifier, self.logins),
            self.bans, self.connections, self.refusals, self.handoff, self.transfers,
            lambda partner: feed_folders(self.config.daemon.drop_root, partner),
        )  # fmt: skip
        self.run_finished = RunFinished()
        self.run_progress = RunProgress()
        self.mailer = Mailer(lambda: self.config)
        self.mail_sender: MailSender | None = None
        self.alert_monitor: AlertMonitor | None = None
        self.pruner: ArtefactPruner | None = None
        self.leases: LeaseKeeper | None = None
        self.notifier = SystemdNotifier()
        self.sftp: SftpServer | None = None
        self.ftp: FtpServer | None = None
        self.web: WebServer | None = None
        self.store = None
        self.runner = FeedRunner(lambda: self.config, self._run_context, self.run_progress.tell)
        self.arrivals = Arrivals(
            config.daemon.quiet_period,
            self.runner.file_arrived,
            wanted=self.runner.wants,
            landed=lambda: landed_files(self.config),
            rescan_every=config.daemon.rescan,
        )
        self.handoff.subscribe(lambda upload: self.arrivals.handed_off(upload.real_path))
        self.handoff.subscribe(self.runner.upload_finished)
        self.scheduler = FeedScheduler(
            lambda: self.config, lambda feed, key: claim_slot(self.store, feed, key), self.runner.request,
            lambda feed, pattern: has_claims(self.store, feed, pattern),
        )  # fmt: skip
        self.control = ControlServer(
            config.daemon.control_socket, lambda: self.config, self.status, self.bans, self.runner.request,
            self.run_progress, self._reload_for_control,
        )  # fmt: skip
        self.instance_lock = InstanceLock(config.daemon.state_dir)
        self.started_monotonic = time.monotonic()
        self.stopping = False

    def _reload_for_control(self) -> dict:
        """`dropd reload`: the reload's outcome, every error when it was rejected."""
        self.reload()
        return dict(self.last_reload or {})

    def _run_context(self, retry_later) -> RunContext:
        """What a run gets: the store, the config in force, the arrivals' view of files, where
        to say it finished and how to queue its recap."""
        arrivals = self.arrivals
        return RunContext(
            self.store, self.config, arrivals.is_complete, retry_later, arrivals.settles_in,
            self.run_finished, self.mailer.queue_recap, self.run_progress,
        )  # fmt: skip

    @property
    def _runs_cut_marker(self):
        """Present when the last stop cut runs short (see `stop`)."""
        return self.config.daemon.state_dir / "runs-cut-at-stop"

    @property
    def servers(self):
        return [server for server in (self.sftp, self.ftp) if server is not None]

    def _prepare_folders(self, config: Config) -> None:
        for folder in (config.daemon.state_dir, config.daemon.drop_root):
            os.makedirs(folder, mode=0o750, exist_ok=True)
        for partner in config.partners.values():
            os.makedirs(config.daemon.drop_root / partner.name, mode=0o750, exist_ok=True)
        for partner, feed in config.feeds():
            os.makedirs(landing_dir(config.daemon.drop_root, partner, feed), mode=0o750, exist_ok=True)
            if feed.direction == "import":
                os.makedirs(archive_dir(config.daemon.drop_root, partner, feed), mode=0o750, exist_ok=True)

    def _prepare_certificate(self, config: Config) -> None:
        ftp = config.ftp
        if ftp and ftp.tls == "required" and ftp.self_signed:
            ensure_self_signed(ftp.certfile, ftp.keyfile)

    def start(self) -> None:
        changed = unmet()
        if changed:
            raise StartupError("a dependency changed under dropd: " + "; ".join(changed))
        try:
            os.makedirs(self.config.daemon.state_dir, mode=0o750, exist_ok=True)
            self.instance_lock.acquire()
        except (OSError, AlreadyRunning) as exc:
            raise StartupError(str(exc)) from exc
        try:
            self._prepare_folders(self.config)
            self._prepare_certificate(self.config)
            self.store = open_store(self.config)
            shared = not isinstance(self.store, SqliteStore)
            cut_at_stop = self._runs_cut_marker.exists()
            with self.store.transaction() as tx:
                # Alone, every run left running is this daemon's; sharing a store, only its own
                # and those whose lease expired.
                interrupted = tx.runs.fail_interrupted(self.config.daemon.instance if shared else None, cut_at_stop)
            self._runs_cut_marker.unlink(missing_ok=True)
            if shared:
                self.bans.shared = SharedBans(self.store)
                self.leases = LeaseKeeper(
                    self.store, self.config.daemon.instance, self.config.daemon.lease, self.runner.request
                )
                self.leases.start()
            self._start_mail()
            for run_id, feed in interrupted:
                log.warning("run.interrupted", run_id=run_id, feed=feed)
            self.arrivals.watch(self.config.daemon.drop_root)
            self.control.start()
            if self.metrics is not None:
                self.metrics.watch(lambda: self.connections.counts()["sessions"], self.runner.activity, self.store)
                self.metrics.serve(self.config.metrics.listen)
            if self.config.web.listen:
                self.web = self._web_console()
                self.web.start()
            if self.config.sftp:
                self.sftp = SftpServer(self.config.sftp, self.zone)
                self.sftp.start()
            if self.config.ftp:
                self.ftp = FtpServer(self.config.ftp, self.zone)
                self.ftp.start()
        except (OSError, RuntimeError, ValueError, SchemaError) as exc:
            self.stop_servers()
            raise StartupError(str(exc)) from exc
        self.scheduler.start()
        for feed in sorted({feed for _, feed in interrupted}):
            self.runner.request(feed, "recovery")
        log.info("daemon.started", partners=len(self.config.partners), pid=os.getpid())

    def _start_mail(self) -> None:
        """The outbox sender and the alert monitor; mail queued before a restart goes out now."""
        smtp = lambda: self.config.smtp  # noqa: E731 (read at each use: a reload swaps the config)
        self.mail_sender = MailSender(
            self.store, lambda: smtp_server(smtp()), lambda: smtp().sender, lambda: smtp().retry
        )
        self.run_finished.subscribe(lambda record: self.mail_sender.wake())
        self.mail_sender.start()
        alerts = Alerts(
            self.store,
            self.mailer.queue_admin,
            self.mailer.send_to_admin_now,
            lambda: self.config.daemon.timezone,
            lambda: self.config.web.base_url,
            lambda key: extra_recipients(self.config, key),
        )
        self.alert_monitor = AlertMonitor(
            lambda: self.config, self.store, alerts, self.mailer.queue_digest_if_due, self.zone.quotas.used
        )
        self.alert_monitor.start()
        self.pruner = ArtefactPruner(self.store, lambda: self.config)
        self.pruner.start()

    def _web_console(self) -> WebServer:
        """The console, reading the config in force at each request (a reload changes staff)."""
        config = lambda: self.config  # noqa: E731
        console = Console(config, self.store, self.logins, self.bans, self.zone.quotas.used)
        auth = StaffAuth(lambda: self.config.web, self.store, self.verifier, self.bans)
        return WebServer(self.config.web, build_app(console, auth, lambda: self.config.web.secure_cookies))

    def status(self) -> dict:
        """What `dropd status` shows; `healthy` is False when a server stopped accepting or the
        store cannot be read."""
        listeners = [
            {"protocol": name, "address": f"{server.address[0]}:{server.address[1]}", "serving": server.serving}
            for name, server in (("sftp", self.sftp), ("ftp", self.ftp))
            if server is not None
        ]
        try:
            with self.store.reading() as tx:
                last_runs = [run.as_dict() for run in tx.runs.last_per_feed()]
                pending_mail = tx.outbox.pending_count()
                alerts = [
                    {"condition": key, "summary": summary, "raised_at": raised_at}
                    for key, (summary, raised_at) in sorted(tx.alerts.raised().items(), key=lambda item: item[1][1])
                ]
            store_ok = True
            self.store_unreachable = None
        except Exception as exc:
            log.warning("status.store_unreadable", error=str(exc))
            last_runs, pending_mail, alerts, store_ok = [], None, None, False
            if self.store_unreachable is None:
                self.store_unreachable = {"since": utc_stamp(), "error": str(exc).splitlines()[0]}
        logins = self.logins.last()
        return {
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - self.started_monotonic),
            "healthy": store_ok and all(listener["serving"] for listener in listeners),
            "listeners": listeners,
            **self.connections.counts(),
            **self.runner.activity(),
            "store": self.store.waiting(),
            "last_runs": last_runs,
            "bans": len(self.bans.bans()),
            "pending_mail": pending_mail,
            "alerts": alerts,
            "last_reload": self.last_reload,
            "store_unreachable": self.store_unreachable,
            "partners": [
                {
                    "partner": name,
                    "used": self.zone.quotas.used(name),
                    "quota": partner.quota,
                    "last_login": logins.get(name),
                }
                for name, partner in sorted(self.config.partners.items())
            ],
        }

    def status_text(self) -> str:
        """The line `systemctl status` shows: the facts of `dropd status`, kept current."""
        if self.stopping:
            return f"stopping: {self.transfers.open} transfers open, runs {'going' if self.runner.busy() else 'done'}"
        status = self.status()
        sessions = ", ".join(f"{count} {protocol}" for protocol, count in sorted(status["sessions"].items()))
        queued = len(status["waiting"]) + len(status["store"]["waiting"])
        parts = [
            f"serving {len(self.config.partners)} partners" if status["healthy"] else "UNHEALTHY",
            *(
                [f"store unreachable since {status['store_unreachable']['since'][11:16]} UTC"]
                if status["store_unreachable"]
                else []
            ),
            f"sessions: {sessions or 'none'}",
            f"running: {', '.join(run['feed'] for run in status['running']) or 'none'}",
            f"queued: {queued}",
        ]
        failed = [run["feed"] for run in status["last_runs"] if run["status"] == "failed"]
        if failed:
            parts.append(f"last run failed: {', '.join(failed)}")
        parts.append(f"bans: {status['bans']}")
        if status["pending_mail"]:
            parts.append(f"mail waiting: {status['pending_mail']}")
        return "; ".join(parts)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code."""
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write)
        for signum in (*_STOP_SIGNALS, signal.SIGHUP):
            signal.signal(signum, lambda *_: None)
        self.start()
        self.notifier.ready(self.status_text())
        self.notifier.keep_alive(self.status_text)
        try:
            while True:
                select.select([wake_read], [], [])
                received = _drain(wake_read)
                if any(signum in _STOP_SIGNALS for signum in received):
                    self.stop(wake_read)
                    return 0
                if signal.SIGHUP in received:
                    self.reload()
        finally:
            signal.set_wakeup_fd(-1)
            os.close(wake_read)
            os.close(wake_write)

    def reload(self) -> bool:
        """Re-read the whole config; keep the running one if the new one is rejected (the
        errors are in `last_reload`)."""
        with self._reloading:
            return self._reload()

    def _reload(self) -> bool:
        self.notifier.reloading()
        try:
            new = load_config(self.config.file, load_keys=True)
            self._prepare_folders(new)
            self._prepare_certificate(new)
            if self.ftp and new.ftp:
                self.ftp.reload_certificate(new.ftp)
        except ConfigInvalid as invalid:
            self.last_reload = {"at": utc_stamp(), "accepted": False, "errors": [str(e) for e in invalid.errors]}
            log.error("config.reload_rejected", errors=[str(error) for error in invalid.errors])
            self.notifier.ready(f"reload rejected, old config kept: {invalid.errors[0]}")
            return False
        except Exception as exc:
            self.last_reload = {"at": utc_stamp(), "accepted": False, "errors": [str(exc)]}
            log.error("config.reload_rejected", errors=[str(exc)])
            if self.ftp and self.config.ftp:
                self.ftp.reload_certificate(self.config.ftp)
            self.notifier.ready(f"reload rejected, old config kept: {exc}")
            return False
        for section in ("sftp", "ftp", "web"):
            old, fresh = getattr(self.config, section), getattr(new, section)
            if (old and old.listen) != (fresh and fresh.listen):
                log.warning(
                    "config.restart_needed", key=f"{section}.listen", message="listen addresses change on restart"
                )
        for key in ("state_dir", "drop_root", "store", "control_socket"):
            if getattr(self.config.daemon, key) != getattr(new.daemon, key):
                log.warning("config.restart_needed", key=f"daemon.{key}", message="this setting changes on restart")
        self.bans.settings = new.security
        self.connections.settings = new.security
        self.arrivals.quiet_period = new.daemon.quiet_period
        self.arrivals.rescan_every = new.daemon.rescan
        self.zone.reconfigure(new.security, Gatekeeper(new.partners, self.bans, self.verifier, self.logins))
        old, self.config = self.config, new
        self.last_reload = {"at": utc_stamp(), "accepted": True, "errors": []}
        log.info("config.reloaded", partners=len(new.partners), **config_changes(old, new))
        self.notifier.ready(self.status_text())
        return True

    def stop(self, wake_read: int | None = None) -> None:
        """Stop accepting, let open transfers finish within grace_time, then close everything."""
        self.stopping = True
        self.notifier.stopping()
        for server in self.servers:
            server.stop_accepting()
        self.scheduler.stop()
        self.control.stop()
        grace = self.config.daemon.grace_time
        log.info("daemon.stopping", open_transfers=self.transfers.open, runs=self.runner.busy(), grace_time=grace)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not (self.transfers.wait_idle(0.2) and self.runner.wait_idle(0.2)):
            if wake_read is not None and any(s in _STOP_SIGNALS for s in _drain(wake_read)):
                log.warning("daemon.stop_forced", open_transfers=self.transfers.open)
                break
        if self.transfers.open:
            log.warning("daemon.transfers_cut", open_transfers=self.transfers.open)
        if self.runner.busy():
            log.warning("daemon.runs_cut", message="unfinished runs are rolled back and retried at the next start")
            try:  # at the next start, these runs are known to have been cut by this stop, not a crash
                self._runs_cut_marker.touch()
            except OSError as exc:
                log.warning("daemon.runs_cut_unrecorded", error=exc.strerror or str(exc))
        self.arrivals.stop()
        for worker in (self.alert_monitor, self.pruner, self.mail_sender, self.leases, self.metrics):
            if worker is not None:
                worker.stop()
        self.connections.stop()
        self.stop_servers()
        self.notifier.stop_keep_alive()
        if self.store is not None and not self.runner.busy():
            self.store.close()  # runs cut at the grace time keep their connections to the end
        self.instance_lock.release()
        log.info("daemon.stopped")

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        if self.web is not None:
            self.web.stop()


def config_changes(old: Config, new: Config) -> dict:
    """Which partners and feeds a reload added, removed or changed (for `config.reloaded`)."""

    def diff(before: dict, after: dict, same) -> dict:
        return {
            "added": sorted(set(after) - set(before)),
            "removed": sorted(set(before) - set(after)),
            "changed": sorted(name for name in set(before) & set(after) if not same(before[name], after[name])),
        }

    def same_feed(a, b) -> bool:
        return a == b and repr(a.options) == repr(b.options)

    def same_partner(a, b) -> bool:
        return a == b and all(same_feed(x, y) for x, y in zip(a.feeds, b.feeds, strict=False))

    partners = diff(old.partners, new.partners, same_partner)
    feeds = diff({f.name: f for _, f in old.feeds()}, {f.name: f for _, f in new.feeds()}, same_feed)
    changes = {f"partners_{what}": names for what, names in partners.items() if names}
    changes.update({f"feeds_{what}": names for what, names in feeds.items() if names})
    return changes


def _drain(descriptor: int) -> set[int]:
    received = set()
    while True:
        try:
            chunk = os.read(descriptor, 64)
        except BlockingIOError:
            return received
        if not chunk:
            return received
        received.update(chunk)
