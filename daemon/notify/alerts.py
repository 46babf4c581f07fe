"""Daemon alerts to `[smtp] admin`: each sent once when its condition starts, and once when it clears.

The conditions, checked every `[alerts] interval`:
- a feed whose last `failed_runs` runs all failed;
- the FTPS certificate expiring within `expiry_warning`, or a certificate or SSH host key
  file that cannot be read;
- free space on `drop_root` or `state_dir` under `min_free`;
- a partner using 90 % of its quota or more;
- a file waiting in a landing folder longer than its feed's schedule allows (an hour past
  its count wait for `on_arrival` feeds, a day and its window for window-only feeds);
- the store unavailable. That one cannot go through the outbox (it is in the store), so it
  is sent at once, best effort, and remembered in memory only.

Which conditions are raised is kept in the store, so a restart neither repeats nor forgets one.
"""

import datetime
import os
import shutil
import time
from dataclasses import dataclass

import structlog
from cryptography import x509

from daemon.clock import utc_now
from daemon.dropzone.quota import WARN_AT, format_bytes
from daemon.feeds import landing
from daemon.notify import smtp
from daemon.periodic import Periodic

log = structlog.get_logger("dropd.alerts")

WINDOW_FEED_ALLOWANCE = 26 * 3600.0
ARRIVAL_FEED_ALLOWANCE = 3600.0


@dataclass(frozen=True)
class Condition:
    key: str
    """Stable across checks: what is raised and cleared ("feed-failing:students")."""
    summary: str
    """One line for the subject."""
    detail: str
    """What is wrong and what to do."""


def failing_feeds(tx, config, in_a_row: int) -> list[Condition]:
    found = []
    for partner, feed in config.feeds():
        if not partner.runs(feed):
            continue
        recent = [run for run in tx.runs.recent(feed=feed.name, limit=in_a_row) if run.status != "running"]
        if len(recent) == in_a_row and all(run.status == "failed" for run in recent):
            found.append(Condition(
                f"feed-failing:{feed.name}",
                f"{feed.name} failed {in_a_row} times in a row",
                f"The last {in_a_row} runs of {feed.name} (partner {partner.name}) failed; the latest: "
                f"{recent[0].reason}. `dropd runs --feed {feed.name}` lists them.",
            ))  # fmt: skip
    return found


def expiring_files(config, warning: float, now: datetime.datetime) -> list[Condition]:
    found = []
    ftp = config.ftp
    if ftp is not None and ftp.tls == "required" and ftp.certfile is not None:
        try:
            certificate = x509.load_pem_x509_certificate(ftp.certfile.read_bytes())
        except (OSError, ValueError) as exc:
            found.append(Condition(
                f"certificate:{ftp.certfile}", "the FTPS certificate cannot be read",
                f"{ftp.certfile} (ftp.certfile) cannot be read: {getattr(exc, 'strerror', None) or exc}.",
            ))  # fmt: skip
        else:
            left = certificate.not_valid_after_utc - now
            if left.total_seconds() < warning:
                found.append(Condition(
                    f"certificate:{ftp.certfile}",
                    f"the FTPS certificate expires {certificate.not_valid_after_utc:%Y-%m-%d}",
                    f"{ftp.certfile} (ftp.certfile) expires at {certificate.not_valid_after_utc.isoformat()} "
                    f"({max(left.days, 0)} days). Renew it and run `systemctl reload dropd`.",
                ))  # fmt: skip
    for key_file in config.sftp.host_keys if config.sftp else ():
        if key_file.exists() and not os.access(key_file, os.R_OK):
            found.append(Condition(
                f"host-key:{key_file}", "an SSH host key cannot be read",
                f"{key_file} (sftp.host_keys) cannot be read by the daemon; SFTP clients will see a new host key "
                "after a restart. Fix its owner or mode.",
            ))  # fmt: skip
    return found


def low_disk(config, min_free: float) -> list[Condition]:
    found = []
    for key, folder in (("drop_root", config.daemon.drop_root), ("state_dir", config.daemon.state_dir)):
        try:
            usage = shutil.disk_usage(folder)
        except OSError:
            continue
        free = usage.free / usage.total if usage.total else 1.0
        if free < min_free:
            found.append(Condition(
                f"disk:{key}", f"{key} is {1 - free:.0%} full",
                f"{folder} (daemon.{key}) has {usage.free / 1e9:.1f} GB free, {free:.1%} of {usage.total / 1e9:.1f} GB, "
                f"under the {min_free:.0%} alert threshold. Uploads and imports fail when it is full.",
            ))  # fmt: skip
    return found


def waiting_files(config, now: float) -> list[Condition]:
    found = []
    for partner, feed in config.feeds():
        if feed.direction != "import" or not partner.runs(feed) or not feed.schedule:
            continue
        allowed = ARRIVAL_FEED_ALLOWANCE + feed.count_wait if "on_arrival" in feed.schedule else WINDOW_FEED_ALLOWANCE
        folder = landing.landing_dir(config.daemon.drop_root, partner, feed)
        late = []
        for path in landing.feed_files(folder, feed.prefix):
            try:
                age = now - path.stat().st_mtime
            except OSError:
                continue
            if age > allowed:
                late.append((age, path.name))
        if late:
            age, name = max(late)
            found.append(Condition(
                f"waiting:{feed.name}", f"{len(late)} file(s) waiting in {feed.name}'s landing folder",
                f"{name} has waited {age / 3600:.1f} hours in {feed.path} (partner {partner.name}) without being "
                f"imported. `dropd runs --feed {feed.name}` and the daemon log say why; `dropd run-now {feed.name}` tries now.",
            ))  # fmt: skip
    return found


def full_quotas(config, used) -> list[Condition]:
    """Partners using WARN_AT or more of their quota (`used(name)`: bytes in the home)."""
    found = []
    for name, partner in sorted(config.partners.items()):
        if partner.quota is None:
            continue
        share = used(name) / partner.quota
        if share >= WARN_AT:
            found.append(Condition(
                f"quota:{name}",
                f"{name} uses {share:.0%} of its quota",
                f"{name}'s folder holds {format_bytes(used(name))} of its {format_bytes(partner.quota)} quota "
                f"({partner.source}: partner.quota). Uploads past it are refused. Clear its archive or failed/ "
                "folders, or raise the quota and reload.",
            ))  # fmt: skip
    return found


class AlertMonitor(Periodic):
    """Checks the conditions every `[alerts] interval`, raising and clearing them through
    `Alerts`, and queues the daily digest when it is due."""

    def __init__(self, config_source, store, alerts: "Alerts", digest, quota_use):
        """`config_source()`: the config in force; `digest(tx, now)` queues the digest when it
        is due; `quota_use(partner)`: the bytes in a partner's home."""
        super().__init__("alerts", lambda: config_source().alerts.interval, self.check, "alerts.check_failed")
        self._config = config_source
        self._store = store
        self.alerts = alerts
        self._digest = digest
        self._quota_use = quota_use

    def check(self) -> None:
        config = self._config()
        if config.smtp is None or not config.smtp.admin:
            return
        settings = config.alerts
        conditions = expiring_files(config, settings.expiry_warning, utc_now())
        conditions += low_disk(config, settings.min_free)
        conditions += waiting_files(config, time.time())
        conditions += full_quotas(config, self._quota_use)
        try:
            with self._store.reading() as tx:
                conditions += failing_feeds(tx, config, settings.failed_runs)
        except Exception as exc:
            self.alerts.store_unavailable(str(exc))
            return
        self.alerts.store_available()
        self.alerts.update(conditions)
        with self._store.transaction(label="digest") as tx:
            self._digest(tx, utc_now())


class Alerts:
    """Raising and clearing conditions, with one mail each way."""

    def __init__(self, store, outbox, direct_send):
        """`outbox(tx, kind, message_id, subject, body)` queues mail to admin in `tx`;
        `direct_send(subject, body)` sends at once (for when the store itself is down)."""
        self.store = store
        self._outbox = outbox
        self._direct_send = direct_send
        self._store_down: str | None = None

    def update(self, conditions: list[Condition]) -> None:
        current = {condition.key: condition for condition in conditions}
        with self.store.transaction(label="alerts") as tx:
            raised = tx.alerts.raised()
            for key, condition in current.items():
                if key not in raised and tx.alerts.raise_(key, condition.summary):
                    self._outbox(
                        tx,
                        "alert",
                        f"alert:{key}:{utc_now():%Y%m%dT%H%M%S}",
                        f"[dropd] alert: {condition.summary}",
                        condition.detail,
                    )
                    log.warning("alert.raised", condition=key, summary=condition.summary)
            for key, summary in raised.items():
                if key not in current and tx.alerts.clear(key):
                    self._outbox(
                        tx,
                        "alert",
                        f"cleared:{key}:{utc_now():%Y%m%dT%H%M%S}",
                        f"[dropd] cleared: {summary}",
                        f"This has cleared: {summary}.",
                    )
                    log.info("alert.cleared", condition=key, summary=summary)

    def store_unavailable(self, error: str) -> None:
        if self._store_down is None:
            self._store_down = error
            log.error("alert.raised", condition="store", error=error)
            self._send_directly(
                "[dropd] alert: the store is unavailable", f"The daemon cannot read its store: {error}."
            )

    def store_available(self) -> None:
        if self._store_down is not None:
            self._store_down = None
            log.info("alert.cleared", condition="store")
            self._send_directly("[dropd] cleared: the store is available again", "The daemon reads its store again.")

    def _send_directly(self, subject: str, body: str) -> None:
        try:
            self._direct_send(subject, body)
        except smtp.DeliveryError as error:
            log.error("mail.failed", kind="alert", step=error.step, error=error.message)
