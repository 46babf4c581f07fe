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
import hashlib
import os
import shutil
import time
import urllib.parse
import zoneinfo
from dataclasses import dataclass

import structlog
from cryptography import x509

from daemon import schedules
from daemon.clock import utc_now, utc_stamp
from daemon.dropzone.quota import WARN_AT, format_bytes
from daemon.feeds import landing
from daemon.notify import smtp, wording
from daemon.notify.recaps import host_name
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

    def __init__(self, config_source, store, alerts: "Alerts", digest, quota_use, clock=utc_now):
        """`config_source()`: the config in force; `digest(tx, now)` queues the digest when it
        is due; `quota_use(partner)`: the bytes in a partner's home; `clock()`: now (UTC)."""
        super().__init__("alerts", lambda: config_source().alerts.interval, self.check, "alerts.check_failed")
        self._config = config_source
        self._store = store
        self.alerts = alerts
        self._digest = digest
        self._quota_use = quota_use
        self._clock = clock

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
                conditions += overdue_feeds(tx, config, self._clock())
        except Exception as exc:
            self.alerts.store_unavailable(str(exc))
            return
        self.alerts.store_available()
        self.alerts.update(conditions)
        with self._store.transaction(label="digest") as tx:
            self._digest(tx, utc_now())


def thread_id(key: str, raised_at: str) -> str:
    """The Message-ID of a condition's alert, which its "resolved" mail follows: one thread
    per time the condition is raised."""
    digest = hashlib.sha256(f"{key}|{raised_at}".encode()).hexdigest()[:24]
    return f"<dropd.alert.{digest}@{host_name()}>"


def alert_mail(
    summary: str, detail: str, raised: str, host: str | None = None, link: str | None = None
) -> tuple[str, str]:
    """(subject, body) of the mail that says a condition started (`raised`: when, as read;
    `host`: the daemon's host, this one's unless given; `link`: its page in the web console)."""
    return (
        wording.line("alert_subject.txt", summary=summary),
        wording.render("alert.txt", detail=detail, raised=raised, host=host or host_name(), link=link),
    )


def console_link(console: str, key: str) -> str | None:
    """The web console's page about condition `key` (its feed or partner; else the dashboard),
    under `[web] base_url` `console`; None without one."""
    if not console:
        return None
    kind, _, subject = key.partition(":")
    page = {"feed-failing": "feeds", "waiting": "feeds", "quota": "partners"}.get(kind)
    return f"{console}/{page}/{urllib.parse.quote(subject, safe='')}" if page else f"{console}/"


def resolved_mail(
    summary: str, raised: str, cleared: str, host: str | None = None, word: str = "resolved"
) -> tuple[str, str]:
    """(subject, body) of the mail that says it cleared (`word`: "received" for a late file)."""
    return (
        wording.line("resolved_subject.txt", summary=summary, word=word),
        wording.render(
            "resolved.txt", summary=summary, raised=raised, cleared=cleared, host=host or host_name(), word=word
        ),
    )


def overdue_feeds(tx, config, now: datetime.datetime) -> list[Condition]:
    """Import feeds with `expect_by` whose deadline passed with no file since the one before:
    neither a run of a file nor a file waiting in the landing folder."""
    found = []
    zone = config.daemon.timezone
    for partner, feed in config.feeds():
        if feed.direction != "import" or not partner.runs(feed) or not feed.expect_by:
            continue
        entry = schedules.parse(feed.expect_by)
        deadline = entry.last_at_or_before(now, zone, feed.name)
        previous = entry.last_at_or_before(deadline - datetime.timedelta(seconds=1), zone, feed.name)
        runs = tx.runs.recent(feed=feed.name, since=utc_stamp(previous), limit=20)
        if any(run.file for run in runs) or _landed_since(config, partner, feed, previous.timestamp()):
            continue
        by = deadline.astimezone(zoneinfo.ZoneInfo(zone))
        found.append(Condition(
            f"overdue:{feed.name}",
            f"no file for {feed.name} from {partner.name} by {by:%H:%M %Z}",
            f"No file for {feed.name} (partner {partner.name}, {feed.path}/{feed.prefix}*) has arrived since "
            f"{previous.astimezone(by.tzinfo):%Y-%m-%d %H:%M %Z}; it was expected by {by:%Y-%m-%d %H:%M %Z} "
            f"(expect_by = \"{feed.expect_by}\"). You will hear once more when it comes.",
        ))  # fmt: skip
    return found


def _landed_since(config, partner, feed, since: float) -> bool:
    folder = landing.landing_dir(config.daemon.drop_root, partner, feed)
    for path in landing.feed_files(folder, feed.prefix):
        try:
            if path.stat().st_mtime >= since:
                return True
        except OSError:
            continue
    return False


def extra_recipients(config, key: str) -> tuple[str, ...]:
    """Who hears of condition `key` besides admin: a feed's `notify` list for its overdue file."""
    kind, _, name = key.partition(":")
    if kind != "overdue":
        return ()
    try:
        return config.feed(name)[1].notify
    except KeyError:
        return ()


class Alerts:
    """Raising and clearing conditions, with one mail each way, the second in the first's thread."""

    def __init__(self, store, outbox, direct_send, timezone=lambda: "UTC", console=lambda: "", also=lambda key: ()):
        """`outbox(tx, kind, message_id, subject, body, thread)` queues mail to admin in `tx`;
        `direct_send(subject, body, thread)` sends at once (for when the store itself is down)
        and returns its Message-ID; `timezone()`: the daemon's, for the times the mails give;
        `console()`: `[web] base_url`, for links to the web console; `also(key)`: who else
        hears of condition `key` (a feed's notify list for its overdue file)."""
        self.store = store
        self._outbox = outbox
        self._direct_send = direct_send
        self._timezone = timezone
        self._console = console
        self._also = also
        self._store_down: tuple[str, str, str | None] | None = None
        """(error, when, the alert's Message-ID) while the store is unavailable."""

    def _local(self, stamp: str) -> str:
        moment = datetime.datetime.fromisoformat(stamp).astimezone(zoneinfo.ZoneInfo(self._timezone()))
        return moment.strftime("%Y-%m-%d %H:%M %Z")

    def update(self, conditions: list[Condition]) -> None:
        current = {condition.key: condition for condition in conditions}
        with self.store.transaction(label="alerts") as tx:
            raised = tx.alerts.raised()
            for key, condition in current.items():
                if key not in raised and tx.alerts.raise_(key, condition.summary):
                    _, raised_at = tx.alerts.raised()[key]
                    subject, body = alert_mail(
                        condition.summary, condition.detail, self._local(raised_at),
                        link=console_link(self._console(), key),
                    )  # fmt: skip
                    self._outbox(tx, "alert", thread_id(key, raised_at), subject, body, also=self._also(key))
                    log.warning("alert.raised", condition=key, summary=condition.summary)
            for key, (summary, raised_at) in raised.items():
                if key not in current and tx.alerts.clear(key):
                    thread = thread_id(key, raised_at)
                    word = "received" if key.startswith("overdue:") else "resolved"
                    subject, body = resolved_mail(summary, self._local(raised_at), self._local(utc_stamp()), word=word)
                    resolved_id = thread.replace("<dropd.alert.", "<dropd.resolved.", 1)
                    self._outbox(tx, "alert", resolved_id, subject, body, thread, also=self._also(key))
                    log.info("alert.cleared", condition=key, summary=summary)

    def store_unavailable(self, error: str) -> None:
        if self._store_down is None:
            log.error("alert.raised", condition="store", error=error)
            summary = "the store is unavailable"
            detail = f"The daemon cannot read its store: {error}."
            raised = utc_stamp()
            thread = self._send_directly(*alert_mail(summary, detail, self._local(raised)))
            self._store_down = (error, raised, thread)

    def store_available(self) -> None:
        if self._store_down is not None:
            _, raised, thread = self._store_down
            self._store_down = None
            log.info("alert.cleared", condition="store")
            summary = "the store is unavailable"
            self._send_directly(*resolved_mail(summary, self._local(raised), self._local(utc_stamp())), thread)

    def _send_directly(self, subject: str, body: str, thread: str | None = None) -> str | None:
        try:
            return self._direct_send(subject, body, thread)
        except smtp.DeliveryError as error:
            log.error("mail.failed", kind="alert", step=error.step, error=error.message)
            return None
