"""What mail dropd queues, and where from: run recaps, alerts, the daily digest, test messages.

Everything goes into the store's outbox inside a transaction of the caller — a recap in the
very transaction that records its run — and `MailSender` delivers it. Only an alert that the
store itself is down is sent directly.
"""

import datetime
import hashlib
import zoneinfo
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import structlog

from daemon.clock import utc_now, utc_stamp
from daemon.notify import recaps, smtp
from daemon.notify.recaps import RecapSettings, host_name
from daemon.notify.smtp import SmtpServer
from daemon.store.records import RunRecord
from daemon.text import printable

log = structlog.get_logger("dropd.mail")


def smtp_server(settings) -> SmtpServer | None:
    """Connection settings from `[smtp]`, the password read from its file now (a rotated
    secret is picked up without a restart)."""
    if settings is None:
        return None
    password = None
    if settings.password_file is not None:
        password = settings.password_file.read_text(encoding="utf-8").strip("\r\n")
    return SmtpServer(
        settings.host, settings.port, settings.security, settings.username, password, settings.timeout,
        str(settings.ca_file) if settings.ca_file else None,
    )  # fmt: skip


class Mailer:
    def __init__(self, config_source):
        """`config_source()` returns the current config (a reload swaps it)."""
        self._config = config_source

    def queue_recap(self, tx, record: RunRecord) -> None:
        """The run's recap, if anyone is to get it, queued in the run's own transaction."""
        config = self._config()
        if config.smtp is None:
            return
        try:
            partner, feed = config.feed(record.feed)
        except KeyError:
            return
        settings = config.smtp
        recap = recaps.compose(
            record, partner, feed,
            RecapSettings(settings.sender, settings.admin, settings.max_attachment, config.daemon.timezone),
        )  # fmt: skip
        if recap is None:
            return
        message_id = recaps.message_id(record)
        tx.outbox.add(
            "recap",
            message_id,
            record.id,
            recap.recipients,
            recap.message["Subject"],
            recap.message.as_bytes(policy=SMTP),
        )

    def queue_admin(self, tx, kind: str, key: str, subject: str, body: str) -> None:
        """A message to `[smtp] admin` (alerts, the digest), queued in `tx`; `key` names this
        one message (the same key is queued once)."""
        config = self._config()
        if config.smtp is None or not config.smtp.admin:
            return
        message_id = f"<dropd.{kind}.{hashlib.sha256(key.encode()).hexdigest()[:24]}@{host_name()}>"
        message = self._plain(config, subject, body, config.smtp.admin, message_id)
        tx.outbox.add(kind, message_id, None, config.smtp.admin, subject, message.as_bytes(policy=SMTP))

    def send_to_admin_now(self, subject: str, body: str) -> None:
        """For the one alert that cannot be queued: the store is down."""
        config = self._config()
        server = smtp_server(config.smtp)
        if server is None or not config.smtp.admin:
            return
        message = self._plain(config, subject, body, config.smtp.admin, f"<dropd.{utc_stamp()}@{host_name()}>")
        client = smtp.connect(server)
        try:
            for address in config.smtp.admin:
                smtp.send(client, message, config.smtp.sender, address)
        finally:
            smtp.close(client)

    def test_message(self, to: str) -> EmailMessage:
        config = self._config()
        body = (
            f"This is a test message from dropd on {host_name()}, sent by `dropd test-smtp` with the [smtp] settings "
            f"of {config.file}.\nIf you can read it, run recaps and alerts will arrive too.\n"
        )
        return self._plain(config, "[dropd] test message", body, (to,), f"<dropd.test.{utc_stamp()}@{host_name()}>")

    def queue_digest_if_due(self, tx, now: datetime.datetime) -> bool:
        """The daily digest to admin, once a day at or after `[smtp] digest_at` local time."""
        config = self._config()
        settings = config.smtp
        if settings is None or not settings.digest_at or not settings.admin:
            return False
        local = now.astimezone(zoneinfo.ZoneInfo(config.daemon.timezone))
        hour, minute = settings.digest_at
        if (local.hour, local.minute) < (hour, minute):
            return False
        if not tx.claims.claim_window("@digest", local.date().isoformat()):
            return False
        since = utc_stamp(now - datetime.timedelta(hours=24))
        runs = tx.runs.since(since)
        subject = f"[dropd] digest {local.date().isoformat()}: {len(runs)} runs, {sum(r.status == 'failed' for r in runs)} failed"
        self.queue_admin(
            tx, "digest", f"digest.{local.date().isoformat()}", subject, digest_body(runs, config.daemon.timezone)
        )
        log.info("mail.digest_queued", runs=len(runs))
        return True

    @staticmethod
    def _plain(config, subject: str, body: str, recipients, message_id: str) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = config.smtp.sender
        message["To"] = ", ".join(recipients)
        message["Date"] = format_datetime(utc_now())
        message["Message-ID"] = message_id
        message.set_content(body)
        return message


def digest_body(runs: list[RunRecord], timezone: str) -> str:
    """Every run of the last day per partner and feed, the feeds with failures first."""
    if not runs:
        return "No runs in the last 24 hours.\n"
    by_feed: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        by_feed.setdefault((run.partner, run.feed), []).append(run)
    order = sorted(by_feed, key=lambda key: (not any(r.status == "failed" for r in by_feed[key]), key))
    zone = zoneinfo.ZoneInfo(timezone)
    lines = []
    for partner, feed in order:
        lines.append(f"{partner} / {feed}")
        for run in sorted(by_feed[(partner, feed)], key=lambda r: r.id):
            started = datetime.datetime.fromisoformat(run.started).astimezone(zone).strftime("%m-%d %H:%M")
            counts = (
                f"{run.rows_applied or 0:,} applied, {run.rows_rejected or 0:,} rejected"
                if run.rows_in_file is not None
                else ""
            )
            reason = (run.reason or "").split(":", 1)[0] if run.status != "success" else ""
            file = printable(run.file) if run.file else "-"
            lines.append(f"  #{run.id:<6} {started}  {run.status:<8} {file}  {counts}{printable(reason)}".rstrip())
        lines.append("")
    return "\n".join(lines)
