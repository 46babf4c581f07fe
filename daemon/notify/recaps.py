"""The recap of a run: who gets it, and the message itself (text, HTML, the error CSV).

A recap goes to the feed's `notify` addresses when the run's status is in its `notify_on`,
and to `[smtp] admin` when the run failed. It says what happened in counts and times only —
no partner data beyond the attached error file — and, for the common failures, what to do
next. The error CSV is attached as it is up to `max_attachment`, zipped above that (at most
ten times that much once unzipped), and when even the zip is too large, its first rows are
attached; the mail says the whole file is kept with the run on the server, never where.
"""

import datetime
import functools
import html
import os
import re
import socket
import tempfile
import zipfile
import zoneinfo
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime

from daemon.store.records import RunRecord
from daemon.text import printable

HINTS = {
    "count-mismatch": "The count file must hold the number of data rows (without the header). Send the data file "
    "and its count file again; the last good import stands until then.",
    "count-file-missing": "This feed requires a count file (<name>_count.txt) beside each data file. Send it, or "
    'set count_file = "optional" for the feed.',
    "data-file-missing": "A count file arrived but its data file did not. Send the data file with the same name "
    "before _count.txt.",
    "count-file-invalid": "The count file must hold one whole number: the count of data rows.",
    "missing-column": "Fix the file's header so it has every required column named above, then send it again.",
    "duplicate-column": "A column the feed reads appears twice in the header. Remove one and send the file again.",
    "mass-removal": "A full replacement would have removed too much of the list, so nothing was applied. If the "
    "list really shrank this much, raise max_removal for this feed; otherwise send the complete list.",
    "duplicate": "This file is identical to one already imported, so nothing was done. To import it again anyway, "
    "run `dropd ingest FEED FILE --force` on the server.",
    "all-rows-rejected": "Every data row was rejected; the attached error file gives each row's problem.",
    "malformed-row": "The file is not a well-formed CSV at the row named: check the quoting and the delimiter.",
    "encoding": "The file is not valid UTF-8 and was read as Windows-1252. Save it as UTF-8 so every character "
    "arrives as written.",
    "unsafe-file": "The landing file was a link or not a regular file and was not read. Upload the file itself.",
    "no-file": "No complete file with the feed's prefix was waiting when the window opened.",
    "interrupted": "The daemon stopped during the run; nothing was applied and the file is imported again.",
    "cut-at-stop": "The daemon was stopped during the run; nothing was applied and the file is imported again.",
    "interrupted-repeatedly": "The daemon died twice while importing this file, so it was set aside in failed/ "
    "instead of being tried again. Look for the cause in the daemon log (memory, a crash), then import the file "
    "by hand with `dropd ingest FEED FILE --force`.",
    "internal-error": "dropd failed while running this feed; the daemon's log has the details for this run.",
    "delivery-failed": "The export could not be delivered; nothing is lost: the same rows go out with the feed's "
    "next run. `dropd test-connection FEED` on the server shows which step fails.",
    "no-rows": "Nothing new to export since the last delivered file, so no file was written.",
}


@dataclass(frozen=True)
class Recap:
    message: EmailMessage
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class RecapSettings:
    sender: str
    admin: tuple[str, ...]
    max_attachment: int
    timezone: str


def recipients_for(record: RunRecord, feed, admin: tuple[str, ...]) -> tuple[str, ...]:
    chosen = list(feed.notify) if record.status in feed.notify_on else []
    if record.status == "failed":
        chosen += admin
    return tuple(dict.fromkeys(address.strip() for address in chosen))


def reason_code(record: RunRecord) -> str | None:
    if not record.reason:
        return None
    code = record.reason.split(":", 1)[0].strip()
    if record.reason.startswith("file read as Windows-1252"):
        return "encoding"
    return code if code in HINTS else None


def compose(record: RunRecord, partner, feed, settings: RecapSettings) -> Recap | None:
    """The recap of `record`, or None when nobody is to receive it."""
    recipients = recipients_for(record, feed, settings.admin)
    if not recipients:
        return None
    message = EmailMessage()
    message["Subject"] = subject(record)
    message["From"] = settings.sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(datetime.datetime.now(datetime.UTC))
    message["Message-ID"] = message_id(record)
    message["X-Dropd-Run"] = str(record.id)
    facts = _facts(record, partner, feed, settings.timezone)
    attachment = _attachment(record, settings.max_attachment)
    hint = HINTS.get(reason_code(record) or "")
    text = _text(record, facts, hint, attachment)
    message.set_content(text)
    message.add_alternative(_html(record, facts, hint, attachment), subtype="html")
    if attachment is not None:
        maintype, subtype = attachment.content_type.split("/")
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.name)
    return Recap(message, recipients)


@functools.cache
def host_name() -> str:
    """This host's name for Message-IDs, looked up once: a recap is composed inside its run's
    transaction, where a slow name lookup must not be paid for every run."""
    return socket.getfqdn() or "localhost"


def message_id(record: RunRecord) -> str:
    """Derived from the run, so a copy sent twice (a reply lost after delivery) is recognisable."""
    feed = re.sub(r"[^A-Za-z0-9_-]", "-", record.feed)  # a msg-id allows few characters
    return f"<dropd.run-{record.id}.{feed}@{host_name()}>"


def subject(record: RunRecord) -> str:
    if record.status == "success":
        rejected = f", {record.rows_rejected:,} rejected" if record.rows_rejected else ""
        return f"[dropd] {record.feed}: success, {record.rows_applied or 0:,} imported{rejected}"
    code = (record.reason or "").split(":", 1)[0].strip() or "no reason recorded"
    return f"[dropd] {record.feed}: {record.status}, {printable(code)}"


def _local(stamp: str | None, timezone: str) -> str:
    if not stamp:
        return "-"
    moment = datetime.datetime.fromisoformat(stamp).astimezone(zoneinfo.ZoneInfo(timezone))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f" ({size / scale:.1f} {unit})"
    return f" ({size} bytes)"


def _facts(record: RunRecord, partner, feed, timezone: str) -> list[tuple[str, str]]:
    facts = [("Partner", partner.name), ("Feed", f"{record.feed} ({record.kind})"), ("Status", record.status)]
    if record.file:
        facts.append(("File", f"{printable(record.file)}{_size(record.size)}"))
    if record.rows_in_file is not None:
        details = record.details or {}
        facts.append(("Rows in file", f"{record.rows_in_file:,}"))
        facts.append(("Applied", f"{record.rows_applied or 0:,}"))
        facts.append((
            "Created / updated / unchanged",
            f"{details.get('created', 0):,} / {details.get('updated', 0):,} / {details.get('unchanged', 0):,}",
        ))  # fmt: skip
        facts.append(("Partial", f"{details.get('partial', 0):,} (applied, a field dropped)"))
        facts.append(("Rejected", f"{record.rows_rejected or 0:,}"))
        for name, value in details.items():
            if name not in ("created", "updated", "unchanged", "partial") and isinstance(value, int):
                facts.append((name.replace("_", " ").capitalize(), f"{value:,}"))
    facts.append(("Started", _local(record.started, timezone)))
    facts.append(("Finished", _local(record.finished, timezone)))
    if record.started and record.finished:
        seconds = (
            datetime.datetime.fromisoformat(record.finished) - datetime.datetime.fromisoformat(record.started)
        ).total_seconds()
        facts.append(("Duration", f"{seconds:.1f} s"))
    facts.append(("Trigger", record.trigger))
    facts.append(("Run", f"#{record.id}"))
    if record.reason:
        facts.append(("Reason", printable(record.reason)))
    return facts


@dataclass(frozen=True)
class _Attachment:
    name: str
    content_type: str
    data: bytes
    note: str | None
    """Said in the body when only part of the error file is attached."""


UNCOMPRESSED_FACTOR = 10
"""A zipped error file holds at most this many times `max_attachment` once unzipped: a
highly repetitive 1 GB file zipped into a 1.5 MB mail is a zip bomb for whoever opens it."""


def _attachment(record: RunRecord, limit: int) -> _Attachment | None:
    """The run's error file: as it is up to `limit` bytes; else zipped, its first rows up to
    `UNCOMPRESSED_FACTOR` x `limit` unzipped, when that zip fits in `limit`; else its first rows
    up to `limit`, plain. Streamed (the zip is spooled to a temporary file): memory does not
    grow with the error file. The note never names a path on the server."""
    path = record.error_file
    if not path or not os.path.isfile(path):
        return None
    name = f"run-{record.id}-{record.feed}-errors.csv"
    size = os.path.getsize(path)
    if size <= limit:
        with open(path, "rb") as handle:
            return _Attachment(name, "text/csv", handle.read(), None)
    whole = f"The error file has {size:,} bytes"
    kept = f"; it is kept on the dropd server with run #{record.id}"
    zipped, rows, complete = _zipped_head(path, name, UNCOMPRESSED_FACTOR * limit, limit)
    if zipped is not None:
        note = (
            None
            if complete
            else f"{whole}, too large to send whole{kept}; its first {rows:,} rows are attached, zipped."
        )
        return _Attachment(name + ".zip", "application/zip", zipped, note)
    head, rows = _first_rows(path, limit)
    note = f"{whole}, too large to send{kept}; its first {rows:,} rows are attached."
    return _Attachment(f"run-{record.id}-{record.feed}-errors-first-rows.csv", "text/csv", head, note)


def _zipped_head(path: str, name: str, most: int, limit: int) -> tuple[bytes | None, int, bool]:
    """The file's whole lines up to `most` bytes, zipped through a temporary file: (the zip, or
    None when it is larger than `limit`; the data rows in it; whether that is the whole file)."""
    rows, copied, complete = -1, 0, False
    with tempfile.TemporaryFile() as spool:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive, open(path, "rb") as source:
            with archive.open(name, "w") as member:
                while True:
                    block = source.read(1 << 20)
                    if not block:
                        complete = True
                        break
                    if copied + len(block) > most:
                        block = block[: block.rfind(b"\n", 0, most - copied) + 1]
                        member.write(block)
                        rows += block.count(b"\n")
                        break
                    member.write(block)
                    copied += len(block)
                    rows += block.count(b"\n")
            if spool.tell() > limit:
                return None, 0, False
        spool.seek(0)
        return spool.read(), max(rows, 0), complete


def _first_rows(path: str, limit: int) -> tuple[bytes, int]:
    """Whole lines from the start of the file, at most `limit` bytes (the header counts)."""
    kept, size, rows = [], 0, -1
    with open(path, "rb") as handle:
        for line in handle:
            if size + len(line) > limit:
                break
            kept.append(line)
            size += len(line)
            rows += 1
    return b"".join(kept), max(rows, 0)


def _text(record: RunRecord, facts, hint: str | None, attachment: _Attachment | None) -> str:
    width = max(len(label) for label, _ in facts)
    lines = [f"{record.feed}: {record.status}", ""]
    lines += [f"{label + ':':<{width + 1}} {value}" for label, value in facts]
    if hint:
        lines += ["", f"What to do: {hint}"]
    if attachment is not None:
        lines += ["", attachment.note or f"The rows with problems are in the attached {attachment.name}."]
    lines += ["", "-- ", "dropd"]
    return "\n".join(lines) + "\n"


def _html(record: RunRecord, facts, hint: str | None, attachment: _Attachment | None) -> str:
    escape = html.escape
    rows = "".join(
        f'<tr><th align="left" style="padding-right:1em">{escape(label)}</th><td>{escape(value)}</td></tr>'
        for label, value in facts
    )
    parts = [f"<h3>{escape(record.feed)}: {escape(record.status)}</h3>", f"<table>{rows}</table>"]
    if hint:
        parts.append(f"<p><b>What to do:</b> {escape(hint)}</p>")
    if attachment is not None:
        parts.append(
            f"<p>{escape(attachment.note or f'The rows with problems are in the attached {attachment.name}.')}</p>"
        )
    return "<html><body>" + "".join(parts) + "</body></html>\n"
