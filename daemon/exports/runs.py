"""Running an export: the rows since the last delivery, written to a file, delivered, recorded.

The file is written from one read snapshot of the store, streamed to a temporary file under
`<state_dir>/exports/` (memory does not grow with the export), then delivered to the feed's
destination. Only when the destination has the file under its real name does a transaction
record the run as `success` and move the feed's watermark (conversations) to the position the
snapshot reached; a failed delivery leaves the watermark where it was, so the same messages
go out next time, and a message stored while the export ran is in the next one. Temporary
failures (the server down, a connection cut) are retried with a doubling wait while the
feed's block is open (three tries for a run started by hand); a wrong host key or a refused
login is not retried.
"""

import csv
import datetime
import functools
import hashlib
import time
from pathlib import Path

import structlog

from daemon.clock import utc_now
from daemon.exports.destinations import Companion, ExportDestination, Naming, OutboxFolder, destination_for
from daemon.exports.errors import PushError
from daemon.runs import openpgp
from daemon.runs.companions import CHECKSUM_SUFFIX, COUNT_SUFFIX, count_name
from daemon.runs.spreadsheet import spreadsheet_row
from daemon.store.records import RunRecord, StoreUnavailable
from handlers import KINDS
from handlers.base import FeedSetup

log = structlog.get_logger("dropd.exports")

MANUAL_TRIES = 3
MAX_WAIT = 600.0
STORE_RETRY = 5.0
"""Seconds before a delivered file's record is tried again while the store is away; doubles."""
MAX_STORE_RETRY = 60.0
RECORD_PATIENCE = 3600.0
"""Seconds of store outage a delivered file's record waits out before the run gives up on it
(the feed then runs again once the store is back, and delivers those rows a second time)."""


def export_naming(feed, moment: datetime.datetime) -> Naming:
    """`<prefix>_<YYYYMMDDTHHMMSSZ>.csv` (`_2`, `_3`, ... before `.csv` when that is taken;
    `.csv.pgp` when the feed encrypts), and `<stem>_count.txt` beside it when the feed writes
    count files."""
    extension = ".csv.pgp" if feed.encrypt_key_file else ".csv"
    return Naming(f"{feed.prefix}_{moment.astimezone(datetime.UTC):%Y%m%dT%H%M%SZ}", extension)


def run_export(
    ctx, partner, feed, trigger: str, block_end: datetime.datetime | None = None, sleep=time.sleep
) -> RunRecord:
    """One export run of `feed`. `block_end` (window runs) bounds the retries of a failed push."""
    recorder = ctx.recorder(partner, feed, trigger)
    kind = KINDS[feed.kind](FeedSetup(partner.name, feed.name, feed.options, ctx.config.daemon.timezone))
    destination = destination_for(feed, ctx.config.daemon.drop_root, partner)
    if isinstance(destination, OutboxFolder):
        _expire(destination.folder, feed)
    started = utc_now()
    naming = export_naming(feed, started)
    bound = log.bind(partner=partner.name, feed=feed.name, trigger=trigger)
    work = ctx.config.daemon.state_dir / "exports"
    work.mkdir(parents=True, exist_ok=True)
    local = plain = work / f"{feed.name}-{started:%Y%m%dT%H%M%S%f}.csv"
    recorder.start(None, None)  # the file is named in the record once it exists
    bound = bound.bind(run_id=recorder.run_id)
    ctx.tell(feed.name, f"run #{recorder.run_id}: writing the export file")
    try:
        with ctx.store.transaction(label=feed.name) as tx:
            kind.settle(tx)
        with ctx.store.reading() as tx:
            after = tx.watermarks.position(feed.name) if kind.watermarked else 0
            upto = kind.upto(tx)
            rows, size, sha256 = _write(local, kind.header(tx), kind.rows(tx, after, upto))
        if rows == 0:
            reason = "no-rows: nothing to export" + (" since the last delivered export" if kind.watermarked else "")
            with ctx.store.transaction(label=feed.name) as tx:
                recorder.finish(tx, "skipped", reason)
            bound.info("run.finished", status="skipped", reason="no-rows")
            return recorder.done()
        plaintext_sha256 = sha256
        if feed.encrypt_key_file:
            local, size, sha256 = _encrypted(ctx, feed, local)
        if feed.count_file == "write":
            count = local.with_name(local.name + COUNT_SUFFIX)
            count.write_text(f"{rows}\n", encoding="ascii")
            naming.companions.append(Companion(count, count_name))
        if feed.checksum_file == "write":
            checksum = local.with_name(local.name + CHECKSUM_SUFFIX)
            naming.companions.append(Companion(checksum, lambda name: name + CHECKSUM_SUFFIX,
                                               lambda path, name: _write_checksum(path, sha256, name)))  # fmt: skip
        bound.info("run.started", rows=rows, size=size, destination=destination.where)
        ctx.tell(feed.name, f"delivering {rows:,} rows ({size:,} bytes) to {destination.where}")
        tell = functools.partial(ctx.tell, feed.name)
        name = _deliver(destination, local, naming, block_end, feed, bound, sleep, tell)
        bound = bound.bind(file=name)
    except openpgp.OpenPgpFailed as failure:
        reason = f"{failure.code}: {failure.message}"
        bound.warning("run.finished", status="failed", reason=reason)
        recorder.fail(reason)
        return recorder.done()
    except PushError as error:
        reason = f"delivery-failed: {error.step}: {error.message}"
        bound.warning("run.finished", status="failed", reason=reason)
        recorder.fail(reason)
        return recorder.done()
    except StoreUnavailable:
        recorder.unreached()
        raise  # nothing was delivered; the runner asks for the feed again once the store is back
    except Exception as exc:
        bound.exception("run.crashed")
        recorder.fail(f"internal-error: {type(exc).__name__}: {exc} (see the daemon log)")
        return recorder.done()
    finally:
        for path in {local, plain}:
            for leftover in (
                path,
                path.with_name(path.name + COUNT_SUFFIX),
                path.with_name(path.name + CHECKSUM_SUFFIX),
            ):
                leftover.unlink(missing_ok=True)

    def record_delivery() -> None:
        with ctx.store.transaction(label=feed.name) as tx:
            if kind.watermarked and upto is not None:
                tx.watermarks.advance(feed.name, upto, recorder.run_id)
            tx.runs.name_file(recorder.run_id, name, sha256, size)
            counts = kind.delivered(tx, after, upto)
            held = counts.get("unknown_contact")
            note = f"unknown-contact: {held:,} held back until their contact is known" if held else None
            details = {"destination": destination.where, "bytes": size, "sha256": sha256, **counts}
            if feed.encrypt_key_file:
                details["plaintext_sha256"] = plaintext_sha256
            recorder.finish(tx, "success", note, rows, rows, 0, details)

    _until_recorded(record_delivery, bound, sleep)
    bound.info("run.finished", status="success", rows=rows, size=size, destination=destination.where)
    return recorder.done()


def _until_recorded(record, bound, sleep) -> None:
    """`record()`, the transaction that says a file was delivered, tried again while the store
    cannot be reached (5 s, doubling to a minute, for up to RECORD_PATIENCE): the file is with
    the partner, and a run that did not record it would deliver its rows a second time."""
    delay, waited = STORE_RETRY, 0.0
    while True:
        try:
            record()
            return
        except StoreUnavailable as exc:
            if waited >= RECORD_PATIENCE:
                raise
            bound.warning("export.record_waits", retry_in=delay, error=str(exc))
            sleep(delay)
            waited += delay
            delay = min(delay * 2, MAX_STORE_RETRY)


def _encrypted(ctx, feed, plain: Path) -> tuple[Path, int, str]:
    """The export encrypted to the partner's key (signed when the feed says so): its path,
    size and SHA-256 (what the partner receives, and what a checksum companion states)."""
    encrypted = plain.with_name(plain.name + ".pgp")
    openpgp.encrypt(plain, encrypted, feed.encrypt_key_file, feed.sign_key_file, feed.sign_passphrase_file)
    digest = hashlib.sha256()
    with open(encrypted, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return encrypted, encrypted.stat().st_size, digest.hexdigest()


def _write_checksum(path: Path, sha256: str, name: str) -> None:
    """`<file>.sha256` as `sha256sum` writes it, naming the file as it was delivered."""
    path.write_text(f"{sha256}  {name}\n", encoding="utf-8")


class _HashingFile:
    """A text sink for csv.writer that encodes, hashes and writes in one pass."""

    def __init__(self, handle):
        self._handle = handle
        self.digest = hashlib.sha256()

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.digest.update(data)
        self._handle.write(data)


def _write(path: Path, header: list[str], rows) -> tuple[int, int, str]:
    """The CSV (UTF-8, RFC 4180 quoting, spreadsheet-safe cells); returns rows, bytes, sha256."""
    count = 0
    with open(path, "wb", buffering=1 << 20) as handle:
        sink = _HashingFile(handle)
        writer = csv.writer(sink)
        writer.writerow(header)
        for row in rows:
            writer.writerow(spreadsheet_row(row))
            count += 1
    return count, path.stat().st_size, sink.digest.hexdigest()


def _deliver(
    destination: ExportDestination, local: Path, naming: Naming, block_end, feed, bound, sleep, tell=lambda text: None
) -> str:
    """Deliver, trying again after temporary failures; the name the file got. `tell(text)`
    says each failed try and when the next one is."""
    wait = feed.destination.retry if feed.destination is not None else 30.0
    tries = 0
    while True:
        tries += 1
        try:
            return destination.deliver(local, naming)
        except PushError as error:
            if not error.transient:
                raise
            if block_end is not None:
                out_of_time = utc_now() + datetime.timedelta(seconds=wait) >= block_end
            else:
                out_of_time = tries >= MANUAL_TRIES
            if out_of_time:
                raise
            bound.warning("export.retry", step=error.step, error=error.message, tries=tries, seconds=round(wait))
            until = (
                f"until the block ends at {block_end:%H:%M} UTC"
                if block_end is not None
                else f"try {tries + 1} of {MANUAL_TRIES}"
            )
            tell(f"try {tries} failed at {error.step}: {error.message}; next try in {wait:.0f} s ({until})")
            sleep(wait)
            wait = min(wait * 2, MAX_WAIT)


def _expire(folder: Path, feed) -> None:
    """The feed's files in the partner's outbox older than keep_days are removed."""
    if not folder.is_dir():
        return
    limit = time.time() - feed.keep_days * 86400
    for path in sorted(folder.iterdir()):
        if path.name.startswith(feed.prefix) and path.is_file() and path.stat().st_mtime < limit:
            path.unlink(missing_ok=True)
            log.info("export.expired", feed=feed.name, file=path.name, keep_days=feed.keep_days)
