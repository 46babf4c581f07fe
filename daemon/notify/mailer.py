"""What mail dropd queues, and where from: run recaps, alerts, the daily digest, test messages.

Everything goes into the store's outbox inside a transaction of the caller — a recap in the
very transaction that records its run — and `MailSender` delivers it. Only an alert that the
store itself is down is sent directly.
"""

import datetime
import zoneinfo
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import structlog

from daemon.clock import utc_now, utc_stamp
from daemon.notify import recaps, smtp, wording
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
        recap_settings = RecapSettings(
            settings.sender, settings.admin, settings.max_attachment, config.daemon.timezone,
            str(config.daemon.drop_root), config.web.base_url,
        )  # fmt: skip
        errors = [recaps.ErrorCount(*count) for count in tx.runs.error_counts(record.id)]
        for recap in recaps.compose(record, partner, feed, recap_settings, errors):
            message = recap.message
            tx.outbox.add(
                "recap", message["Message-ID"], record.id, (recap.recipient,), message["Subject"],
                message.as_bytes(policy=SMTP),
            )  # fmt: skip

    def queue_admin(
        self, tx, kind: str, message_id: str, subject: str, body: str, thread: str | None = None, also=()
    ) -> None:
        """A message to each `[smtp] admin` address (alerts, the digest), queued in `tx`.
        `message_id` names this one message (queued once); `thread`, the Message-ID of the
        message it follows (a "resolved" mail follows its alert)."""
        config = self._config()
        if config.smtp is None:
            return
        for address in dict.fromkeys((*config.smtp.admin, *also)):
            message = self._plain(config, subject, body, address, message_id, thread)
            tx.outbox.add(kind, message_id, None, (address,), subject, message.as_bytes(policy=SMTP))

    def send_to_admin_now(self, subject: str, body: str, thread: str | None = None) -> str | None:
        """For the one alert that cannot be queued: the store is down. Its Message-ID, so the
        mail that says it is back can follow it; None when there is nobody to tell."""
        config = self._config()
        server = smtp_server(config.smtp)
        if server is None or not config.smtp.admin:
            return None
        message_id = f"<dropd.direct.{utc_now():%Y%m%dT%H%M%S%f}@{host_name()}>"
        client = smtp.connect(server)
        try:
            for address in config.smtp.admin:
                message = self._plain(config, subject, body, address, message_id, thread)
                smtp.send(client, message, config.smtp.sender, address)
        finally:
            smtp.close(client)
        return message_id

    def test_message(self, to: str) -> EmailMessage:
        config = self._config()
        body = wording.render("test_message.txt", host=host_name(), config_file=str(config.file))
        subject = wording.line("test_message_subject.txt")
        return self._plain(config, subject, body, to, f"<dropd.test.{utc_now():%Y%m%dT%H%M%S%f}@{host_name()}>")

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
        runs = tx.runs.since(utc_stamp(now - datetime.timedelta(hours=24)))
        view = digest_view(runs, config.daemon.timezone, now)
        subject = wording.line("digest_subject.txt", day=local.date().isoformat(), **view)
        message_id = f"<dropd.digest.{local.date().isoformat()}@{host_name()}>"
        self.queue_admin(tx, "digest", message_id, subject, wording.render("digest.txt", **view))
        log.info("mail.digest_queued", runs=len(runs))
        return True

    @staticmethod
    def _plain(config, subject: str, body: str, recipient: str, message_id: str, thread: str | None = None):
        return plain_message(config.smtp.sender, subject, body, recipient, message_id, thread)


def plain_message(
    sender: str, subject: str, body: str, recipient: str, message_id: str, thread: str | None = None
) -> EmailMessage:
    """A text-only message to admin (alerts, the digest, tests); `thread`: the Message-ID it follows."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(utc_now())
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    if thread:
        message["In-Reply-To"] = thread
        message["References"] = thread
    message.set_content(body)
    return message


def digest_view(runs: list[RunRecord], timezone: str, now: datetime.datetime) -> dict:
    """What the digest template is given: each feed's runs of the last day, the feeds with
    failures first."""
    by_feed: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        by_feed.setdefault((run.partner, run.feed), []).append(run)
    order = sorted(by_feed, key=lambda key: (not any(r.status == "failed" for r in by_feed[key]), key))
    zone = zoneinfo.ZoneInfo(timezone)
    feeds = []
    for partner, feed in order:
        lines = []
        for run in sorted(by_feed[(partner, feed)], key=lambda r: r.id):
            export = recaps.direction(run) == "export"
            if run.rows_in_file is None or run.status != "success":
                counts = "0 applied" if run.rows_in_file is not None else ""
            elif export:
                counts = f"{run.rows_applied or 0:,} exported"
            else:
                counts = f"{run.rows_applied or 0:,} applied, {run.rows_rejected or 0:,} rejected"
            lines.append(dict(
                id=run.id,
                started=datetime.datetime.fromisoformat(run.started).astimezone(zone).strftime("%m-%d %H:%M"),
                status=run.status,
                file=printable(run.file) if run.file else "-",
                counts=counts,
                code=printable((run.reason or "").split(":", 1)[0].strip()) if run.status != "success" else "",
            ))  # fmt: skip
        feeds.append(dict(partner=partner, name=printable(feed), runs=lines))
    return dict(
        feeds=feeds,
        runs=len(runs),
        failed=sum(run.status == "failed" for run in runs),
        until=now.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
    )
