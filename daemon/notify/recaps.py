"""The recap of a run: who gets it, and the message itself (text, HTML, the error CSV).

A recap goes to the feed's `notify` addresses when the run's status is in its `notify_on`,
and to `[smtp] admin` when the run failed, each recipient a message of its own. The
partner's version says what happened to their file and what to fix, with the error file;
it never names a path on the server, an admin command or the admin's address. The admin's
version adds the reason in full, the paths and the command to run. Neither holds partner
data beyond the attached error file. The words are templates (`daemon/notify/wording.py`).

The error CSV is attached as it is up to `max_attachment`, zipped above that (at most ten
times that much once unzipped), and when even the zip is too large, its first rows are
attached; the mail says the whole file is kept with the run on the server, never where.
"""

import datetime
import functools
import hashlib
import os
import re
import socket
import tempfile
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from daemon.clock import local_text
from daemon.feeds import landing
from daemon.notify import wording
from daemon.store.records import RunRecord
from daemon.text import printable
from handlers import KINDS

PARTNER = "partner"
ADMIN = "admin"

HINTS: dict[str, tuple[str, str | None]] = {
    # code: (what the partner is told to do, what admin is told when it differs)
    "count-mismatch": (
        "The count file must hold the number of data rows (without the header). Send the data file and its "
        "count file again; the last good import stands until then.",
        None,
    ),
    "count-file-missing": (
        "This feed requires a count file (<name>_count.txt) beside each data file. Send the data file again "
        "with its count file.",
        "This feed requires a count file (<name>_count.txt) beside each data file. The partner must send it, "
        'or set count_file = "optional" for the feed.',
    ),
    "data-file-missing": (
        "A count file arrived but its data file did not. Send the data file with the same name before _count.txt.",
        None,
    ),
    "count-file-invalid": ("The count file must hold one whole number: the count of data rows.", None),
    "missing-column": ("Fix the file's header so it has every required column named above, then send it again.", None),
    "duplicate-column": (
        "A column the feed reads appears twice in the header. Remove one and send the file again.",
        None,
    ),
    "mass-removal": (
        "A full replacement would have removed too much of the list, so nothing was applied. Send the complete "
        "list; if the list really shrank this much, reply to this message.",
        "A full replacement would have removed too much of the list, so nothing was applied. If the list really "
        "shrank this much, raise max_removal for this feed; otherwise the partner must send the complete list.",
    ),
    "duplicate": (
        "This file is identical to one already imported, so nothing was done. If it must be imported again, "
        "reply to this message.",
        "This file is identical to one already imported, so nothing was done. To import it again anyway, "
        "run the command below.",
    ),
    "all-rows-rejected": ("Every data row was rejected; the attached error file gives each row's problem.", None),
    "malformed-row": ("The file is not a well-formed CSV at the row named: check the quoting and the delimiter.", None),
    "encoding": (
        "The file is not valid UTF-8 and was read as Windows-1252. Save it as UTF-8 so every character arrives "
        "as written.",
        None,
    ),
    "unsafe-file": (
        "The landing file was a link or not a regular file and was not read. Upload the file itself.",
        None,
    ),
    "no-file": ("No complete file with the feed's prefix was waiting at the scheduled time.", None),
    "interrupted": (
        "The service stopped during the run; nothing was applied and the file is imported again. You need not "
        "send it again.",
        "The daemon stopped during the run; nothing was applied and the file is imported again.",
    ),
    "cut-at-stop": (
        "The service was stopped during the run; nothing was applied and the file is imported again. You need "
        "not send it again.",
        "The daemon was stopped during the run; nothing was applied and the file is imported again.",
    ),
    "interrupted-repeatedly": (
        "The import of this file was interrupted twice on our side, so it was set aside; we have been told. "
        "You need not send it again.",
        "The daemon died twice while importing this file, so it was set aside in failed/ instead of being tried "
        "again. Look for the cause in the daemon log (memory, a crash), then import the file by hand with the "
        "command below.",
    ),
    "internal-error": (
        "The service failed while running this feed; nothing was applied and we have been told.",
        "dropd failed while running this feed; the daemon's log has the details for this run.",
    ),
    "delivery-failed": (
        "The export could not be delivered to your server; nothing is lost: the same rows go out with the "
        "feed's next run. The step that failed is named above.",
        "The export could not be delivered; nothing is lost: the same rows go out with the feed's next run. "
        "The command below shows which step fails.",
    ),
    "no-rows": ("Nothing new to export since the last delivered file, so no file was written.", None),
    "unknown-contact": (
        "Some messages name a contact that is not known yet; they were left out of this file and go out with "
        "the first export after the contact arrives in a contacts file.",
        None,
    ),
}


@dataclass(frozen=True)
class Recap:
    """One recipient's copy of a run's recap."""

    recipient: str
    audience: str
    """PARTNER or ADMIN."""
    message: EmailMessage


@dataclass(frozen=True)
class RecapSettings:
    sender: str
    admin: tuple[str, ...]
    max_attachment: int
    timezone: str
    drop_root: str = ""
    """Server paths under it are shown to the partner relative to their home."""
    console: str = ""
    """`[web] base_url`: admin's recap links to the run's page in the web console."""


@dataclass(frozen=True)
class ErrorCount:
    """One error code of a run: how many rows had it, and the first few of their numbers."""

    code: str
    count: int
    first_rows: list[int]


def recipients_for(record: RunRecord, feed, admin: tuple[str, ...]) -> list[tuple[str, str]]:
    """(address, audience) for each recipient once; an address that is also admin's gets admin's version."""
    chosen: dict[str, str] = {}
    if record.status == "failed":
        chosen.update((address.strip(), ADMIN) for address in admin)
    if record.status in feed.notify_on:
        for address in feed.notify:
            chosen.setdefault(address.strip(), PARTNER)
    return list(chosen.items())


def reason_code(record: RunRecord) -> str | None:
    if not record.reason:
        return None
    code = record.reason.split(":", 1)[0].strip()
    if record.reason.startswith("file read as Windows-1252"):
        return "encoding"
    return code if code in HINTS else None


def compose(record: RunRecord, partner, feed, settings: RecapSettings, errors: list[ErrorCount] = ()) -> list[Recap]:
    """The recap of `record` for each of its recipients (none: an empty list). `errors`: the
    run's row errors summed by code."""
    attachment = _attachment(record, settings.max_attachment)
    recaps = []
    for recipient, audience in recipients_for(record, feed, settings.admin):
        view = run_view(record, partner, feed, settings, audience, list(errors), attachment)
        message = EmailMessage()
        message["Subject"] = subject(record)
        message["From"] = settings.sender
        message["To"] = recipient
        if audience == PARTNER and partner.reply_to:
            message["Reply-To"] = ", ".join(partner.reply_to)
        message["Date"] = format_datetime(datetime.datetime.now(datetime.UTC))
        message["Message-ID"] = message_id(record, audience, recipient)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
        message["X-Dropd-Run"] = str(record.id)
        view["outcome"] = wording.line("recap_outcome.txt", **view)
        view["facts"] = wording.pairs("recap_facts.txt", **view)
        view["width"] = max(len(label) for label, _ in view["facts"]) + 1
        message.set_content(wording.render("recap.txt", **view))
        message.add_alternative(wording.render("recap.html", **view), subtype="html")
        if attachment is not None:
            maintype, subtype = attachment.content_type.split("/")
            message.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.name)
        recaps.append(Recap(recipient, audience, message))
    return recaps


@functools.cache
def host_name() -> str:
    """This host's name for Message-IDs, looked up once: a slow name lookup must not be paid
    for every recap."""
    return socket.getfqdn() or "localhost"


def message_id(record: RunRecord, audience: str, recipient: str) -> str:
    """Derived from the run, the audience and the recipient, so a copy sent twice (a reply
    lost after delivery) is recognisable as the same message."""
    feed = re.sub(r"[^A-Za-z0-9_-]", "-", record.feed)  # a msg-id allows few characters
    who = hashlib.sha256(recipient.lower().encode()).hexdigest()[:10]
    return f"<dropd.run-{record.id}.{feed}.{audience}.{who}@{host_name()}>"


def direction(record: RunRecord) -> str:
    kind = KINDS.get(record.kind)
    return kind.direction if kind is not None else "import"


def subject(record: RunRecord) -> str:
    return wording.line(
        "recap_subject.txt",
        feed=printable(record.feed),
        status=record.status,
        direction=direction(record),
        applied=record.rows_applied or 0,
        rejected=record.rows_rejected or 0,
        code=printable((record.reason or "").split(":", 1)[0].strip()),
    )


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _partner_reason(reason: str, settings: RecapSettings, partner) -> str:
    """The reason as the partner may read it: the internal details of an internal error
    left out, server paths in their home shown from the home, any other server path hidden."""
    if reason.startswith("internal-error"):
        return "internal-error"
    home = os.path.join(settings.drop_root, partner.name) if settings.drop_root else None
    if home:
        reason = reason.replace(home + "/", "/").replace(home, "/")
    return re.sub(r"(?<![\w.])/(?:var|srv|opt|etc|home|tmp|run|usr|root)/\S*", "(a folder on the server)", reason)


def _where_delivered(record: RunRecord, feed, audience: str) -> str:
    """Where an export went, as its reader knows the place."""
    if feed.destination is None:
        return f"in your folder {feed.path}" if audience == PARTNER else f"in the partner's folder {feed.path}"
    destination = feed.destination
    if audience == PARTNER:
        return f"pushed to {destination.host}:{destination.directory or '~ (the login directory)'}"
    return f"pushed to {destination.where}"


def run_view(
    record: RunRecord, partner, feed, settings: RecapSettings, audience: str, errors: list[ErrorCount], attachment
) -> dict:
    """What the recap templates are given: plain values, every one of them printable."""
    details = record.details or {}
    code = reason_code(record)
    partner_hint, admin_hint = HINTS.get(code or "", (None, None))
    reason = printable(record.reason or "")
    if audience == PARTNER:
        reason = _partner_reason(reason, settings, partner)
    duration = None
    if record.started and record.finished:
        seconds = (
            datetime.datetime.fromisoformat(record.finished) - datetime.datetime.fromisoformat(record.started)
        ).total_seconds()
        duration = f"{seconds:.1f} s"
    other_counts = [
        (name.replace("_", " ").capitalize(), value)
        for name, value in details.items()
        if name not in ("created", "updated", "unchanged", "partial", "bytes") and isinstance(value, int)
    ]
    return dict(
        admin=audience == ADMIN,
        run_id=record.id,
        partner=partner.name,
        feed=printable(record.feed),
        kind=record.kind,
        direction=feed.direction,
        status=record.status,
        code=code or printable((record.reason or "").split(":", 1)[0].strip()),
        reason=reason,
        reason_prose=reason.replace(": ", ", ", 1),
        file=printable(record.file) if record.file else None,
        size=_size(record.size),
        read_file=record.rows_in_file is not None,
        rows=record.rows_in_file or 0,
        applied=record.rows_applied or 0,
        rejected=record.rows_rejected or 0,
        created=details.get("created", 0),
        updated=details.get("updated", 0),
        unchanged=details.get("unchanged", 0),
        partial=details.get("partial", 0),
        other_counts=other_counts if record.status != "failed" else [],
        delivered=_where_delivered(record, feed, audience) if feed.direction == "export" else None,
        errors=errors,
        started=local_text(record.started, settings.timezone),
        finished=local_text(record.finished, settings.timezone),
        duration=duration,
        trigger=record.trigger,
        instance=record.instance,
        hint=(admin_hint or partner_hint) if audience == ADMIN else partner_hint,
        commands=_commands(record, code, _folders(settings, partner, feed)) if audience == ADMIN else [],
        config_file=str(partner.source),
        landing=os.path.join(settings.drop_root, partner.name, feed.path.lstrip("/")) if settings.drop_root else None,
        error_file=record.error_file,
        link=f"{settings.console}/runs/{record.id}" if settings.console and audience == ADMIN else None,
        attachment_name=attachment.name if attachment is not None else None,
        attachment_note=attachment.note if attachment is not None else None,
    )


def _folders(settings: RecapSettings, partner, feed) -> tuple[str | None, str | None]:
    """An import feed's archive (duplicates go there too) and failed/ folders, on the server."""
    if not settings.drop_root or feed.direction != "import":
        return None, None
    root = Path(settings.drop_root)
    archive = str(landing.archive_dir(root, partner, feed)) if feed.after_import == "move" else None
    return archive, str(landing.landing_dir(root, partner, feed) / landing.FAILED_FOLDER)


def _commands(record: RunRecord, code: str | None, folders: tuple[str | None, str | None]) -> list[str]:
    """What admin may run on the server about this run."""
    feed = record.feed
    archive, failed = folders
    commands = [f"dropd runs --feed {feed}"]
    if code == "duplicate" and record.file and archive:
        commands.append(f"dropd ingest {feed} {archive}/{printable(record.file)} --force")
    elif code == "interrupted-repeatedly" and record.file and failed:
        commands.append(f"dropd ingest {feed} {failed}/{printable(record.file)} --force")
    elif code == "delivery-failed":
        commands.append(f"dropd test-connection {feed}")
    elif code in ("internal-error", "interrupted", "cut-at-stop", "no-file"):
        commands.append(f"dropd run-now {feed}")
    return commands


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
