"""`dropd mail --samples DIR`: one message of every kind dropd sends, rendered from the same
code and templates as the real ones, so a reviewer reads them all in one place.

Each sample is written twice: `NAME.eml` (the whole message, as a mail client opens it) and
`NAME.txt` (its headers that a reader sees, then the plain-text body). The runs, times and
host are made up and fixed, so the samples change only when the words do; `docs/mails/`
holds them and a test renders them again and compares.
"""

import datetime
import tempfile
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from daemon.config.destinations import Destination
from daemon.config.partners import Feed, Partner
from daemon.notify import recaps
from daemon.notify.alerts import alert_mail, console_link, resolved_mail
from daemon.notify.mailer import digest_view, plain_message
from daemon.notify.recaps import ErrorCount, RecapSettings
from daemon.notify.wording import line, render
from daemon.store.records import RunRecord

HOST = "dropd.example.org"
DATE = "Fri, 27 Nov 2026 08:00:41 +0000"
TIMEZONE = "America/New_York"
SENDER = "dropd@example.org"
CONSOLE = "https://dropd.example.org"
"""The web console's base_url in the samples: admin's mails link to it."""
ADMIN = "ops@example.org"
PARTNER_CONTACT = "registrar@northfield.example"
HEADERS = ("Subject", "From", "To", "Reply-To", "Auto-Submitted", "In-Reply-To")

ERROR_ROWS = (
    "row,code,failure_type,message,Student ID,First Name,Last Name,Cell,Email\r\n"
    "3,invalid-phone,complete,mobile number '555' is not a valid phone number,1003,Alan,Turing,555,\r\n"
    "7,invalid-phone,complete,mobile number '12' is not a valid phone number,1007,Grace,Hopper,12,\r\n"
    "9,missing-value,complete,First Name is empty,1009,,Lamarr,(202) 555-0109,\r\n"
)


def _partner() -> Partner:
    return Partner(
        name="northfield", enabled=True, password_hashes=("$argon2id$sample",), authorized_keys=(), allow_from=(),
        feeds=(), source=Path("/etc/dropd/partners.d/northfield.toml"), reply_to=("support@example.org",),
    )  # fmt: skip


def _import_feed() -> Feed:
    return Feed(
        name="northfield-students", kind="contacts", direction="import", enabled=True, description="",
        path="/imports", schedule=("on_arrival",), notify=(PARTNER_CONTACT,), notify_on=("failed", "success"),
        prefix="StudentData", files="most_recent", delimiter="comma", after_import="move",
        archive_path="/imports/archive", count_file="optional", count_wait=600.0, error_report=True,
    )  # fmt: skip


def _export_feed() -> Feed:
    destination = Destination(
        protocol="sftp", host="sftp.northfield.example", port=22, username="dropd", password_file=None,
        private_key_file=Path("/etc/dropd/keys/northfield"), passphrase_file=None, directory="/inbound",
        host_key=None, ca_file=None, timeout=60.0, retry=60.0,
    )  # fmt: skip
    return Feed(
        name="northfield-conversations", kind="conversations_export", direction="export", enabled=True, description="",
        path="/outbox", schedule=("06-09",), notify=(PARTNER_CONTACT,), notify_on=("failed", "success"),
        prefix="conversations", count_file="write", keep_days=30, destination=destination,
    )  # fmt: skip


def _run(run_id: int, feed: Feed, **fields) -> RunRecord:
    values = dict(
        id=run_id, partner="northfield", feed=feed.name, kind=feed.kind, trigger="arrival", file=None, sha256=None,
        rows_in_file=None, rows_applied=None, rows_rejected=None, started="2026-11-27T08:00:04+00:00",
        finished="2026-11-27T08:00:41+00:00", status="success", reason=None, details={}, error_file=None,
        size=None, instance="dropd-1",
    )  # fmt: skip
    values.update(fields)
    return RunRecord(**values)


def _fixed(message: EmailMessage, name: str) -> EmailMessage:
    """The message with its date, host and MIME boundaries fixed, so the sample is stable."""
    message.replace_header("Date", DATE)
    for header in ("Message-ID", "In-Reply-To", "References"):
        if message[header]:
            value = str(message[header]).rsplit("@", 1)[0] + f"@{HOST}>"
            message.replace_header(header, value)
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"=={name}.{number}==")
    return message


def _recap(record: RunRecord, feed: Feed, audience: str, errors=(), error_file: str | None = None) -> EmailMessage:
    settings = RecapSettings(SENDER, (ADMIN,), 1_000_000, TIMEZONE, "/var/lib/dropd/drop", CONSOLE)
    if error_file is not None:
        record = RunRecord(**{**record.as_dict(), "error_file": error_file})
    for recap in recaps.compose(record, _partner(), feed, settings, list(errors)):
        if recap.audience == audience:
            return recap.message
    raise AssertionError(f"no {audience} recap for run {record.id}")


def samples(work: Path) -> dict[str, EmailMessage]:
    """Every sample message by name; `work` is where the sample error file is written."""
    imports, exports = _import_feed(), _export_feed()
    error_file = work / "run-412-northfield-students.csv"
    error_file.write_text("\ufeff" + ERROR_ROWS, encoding="utf-8")
    success = _run(
        412, imports, file="StudentData_2026_11_27.csv", size=1_843_200, rows_in_file=9_826, rows_applied=9_812,
        rows_rejected=14, details={"created": 112, "updated": 1_390, "unchanged": 8_310, "partial": 3},
    )  # fmt: skip
    errors = [ErrorCount("invalid-phone", 11, [3, 7, 12]), ErrorCount("missing-value", 3, [9, 40, 41])]
    voided = _run(
        413, imports, file="StudentData_2026_11_28.csv", size=1_845_000, rows_in_file=9_826, rows_applied=0,
        rows_rejected=0, status="failed", trigger="window:overnight",
        reason="count-mismatch: the count file said 9,830 rows, the file has 9,826",
    )  # fmt: skip
    exported = _run(
        414, exports, file="conversations_20261127T110000Z.csv", size=482_113, rows_in_file=1_203,
        rows_applied=1_203, rows_rejected=0, trigger="window:06-09",
        details={"destination": "sftp://dropd@sftp.northfield.example:22/inbound", "bytes": 482_113},
    )  # fmt: skip
    messages = {
        "recap-partner": _recap(success, imports, recaps.PARTNER, errors, str(error_file)),
        "recap-voided-partner": _recap(voided, imports, recaps.PARTNER),
        "recap-voided-admin": _recap(voided, imports, recaps.ADMIN),
        "recap-export": _recap(exported, exports, recaps.PARTNER),
    }
    now = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
    view = digest_view([success, voided, exported], TIMEZONE, now)
    messages["digest"] = plain_message(
        SENDER, line("digest_subject.txt", day="2026-11-27", **view), render("digest.txt", **view), ADMIN,
        "<dropd.digest.2026-11-27@localhost>",
    )  # fmt: skip
    summary = "northfield-students failed 2 times in a row"
    detail = (
        "The last 2 runs of northfield-students (partner northfield) failed; the latest: count-mismatch: the count "
        "file said 9,830 rows, the file has 9,826. `dropd runs --feed northfield-students` lists them."
    )
    thread = "<dropd.alert.0123456789abcdef01234567@localhost>"
    subject, body = alert_mail(
        summary, detail, "2026-11-27 03:05 EST", HOST, console_link(CONSOLE, "feed-failing:northfield-students")
    )
    messages["alert"] = plain_message(SENDER, subject, body, ADMIN, thread)
    subject, body = resolved_mail(summary, "2026-11-27 03:05 EST", "2026-11-28 03:01 EST", HOST)
    resolved_id = thread.replace("alert", "resolved", 1)
    messages["resolved"] = plain_message(SENDER, subject, body, ADMIN, resolved_id, thread)
    return {name: _fixed(message, name) for name, message in messages.items()}


def text_of(message: EmailMessage) -> str:
    """What a reader sees: the headers that matter, then the plain-text body."""
    headers = [f"{name}: {message[name]}" for name in HEADERS if message[name]]
    body = message.get_body(("plain",)).get_content()
    attached = [part.get_filename() for part in message.iter_attachments()]
    tail = [f"[attached: {name}]" for name in attached]
    return "\n".join(headers) + "\n\n" + body + ("\n".join(tail) + "\n" if tail else "")


def write_samples(directory: Path) -> list[Path]:
    """Each sample as NAME.eml and NAME.txt in `directory`; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as work:
        for name, message in samples(Path(work)).items():
            eml, txt = directory / f"{name}.eml", directory / f"{name}.txt"
            eml.write_bytes(message.as_bytes(policy=SMTP))
            txt.write_text(text_of(message), encoding="utf-8")
            written += [eml, txt]
    return written
