"""Running imports: a feed's landing folder, or one file, becomes recorded runs.

A file is applied in one transaction together with its run's final row and the ledger
entry, so a crash leaves the store as before the run or as after it, never between. The
landing file is moved (archive, `failed/`) or deleted only after that commit; on restart a
run left `running` is marked failed and its file, still in place, is picked up again.
"""

import csv
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.clock import utc_now
from daemon.feeds import checksums, count_files, landing
from daemon.feeds.count_files import read_count
from daemon.feeds.csv_source import (
    CsvRows,
    CsvStructureError,
    DecryptedFile,
    LandedFile,
    UnsafeFile,
    inspect_file,
)
from daemon.runs import openpgp
from daemon.runs.companions import COUNT_SUFFIX
from daemon.runs.lifecycle import RunContext, RunRecorder
from daemon.runs.spreadsheet import spreadsheet_row
from daemon.store.records import RunRecord, StoreUnavailable
from daemon.temp_names import our_temp_name
from daemon.text import printable
from handlers import KINDS
from handlers.base import FeedSetup, FileRejected, ImportCounts

log = structlog.get_logger("dropd.runs")

MAX_INTERRUPTIONS = 2
"""A file whose import the daemon died under this many times in a row is set aside, not retried:
a file that kills the daemon (memory) would otherwise kill it again at every start."""


class ClaimedElsewhere(Exception):
    def __init__(self, run_id: int):
        super().__init__(f"imported by run {run_id}")
        self.run_id = run_id


@dataclass(frozen=True)
class Companions:
    """A data file's companions: checked with it, moved where it goes."""

    count: Path | None = None
    checksum: Path | None = None
    marker: Path | None = None

    @property
    def paths(self) -> list[Path]:
        return [path for path in (self.count, self.checksum, self.marker) if path is not None]


@dataclass
class DryRunReport:
    file: str
    counts: ImportCounts | None
    errors: list
    reason: str | None


def import_file(
    ctx: RunContext, partner, feed, path: Path, trigger: str, force=False, dry_run=False, manual=False,
    companions: "Companions | None" = None,
) -> RunRecord | DryRunReport:  # fmt: skip
    """Import one file through `feed`, checked against its count and checksum files when given.

    The file is opened once, without following a symbolic link, and everything is read from
    that descriptor. `manual` (dropd ingest) leaves the file where it is.
    """
    recorder = ctx.recorder(partner, feed, trigger, dry_run)
    companions = companions or Companions()
    bound = log.bind(partner=partner.name, feed=feed.name, file=path.name, trigger=trigger)
    try:
        landed = LandedFile(path)
    except UnsafeFile as exc:
        recorder.start(path.name, None)
        return _failed(ctx, recorder, partner, feed, path, f"unsafe-file: {exc}", manual, bound, companions)
    with landed:
        if not openpgp.is_encrypted_name(path.name):
            return _import_landed(ctx, recorder, partner, feed, landed, force, manual, companions, bound)
        try:
            plaintext = _decrypt(ctx, feed, landed)
        except openpgp.OpenPgpFailed as failure:
            recorder.start(path.name, None, os.fstat(landed.fd).st_size)
            reason = f"{failure.code}: {failure.message}"
            return _failed(ctx, recorder, partner, feed, landed, reason, manual, bound, companions)
        with plaintext:
            bound.info("file.decrypted", inner_name=plaintext.name, verified=bool(feed.verify_key_file))
            return _import_landed(ctx, recorder, partner, feed, plaintext, force, manual, companions, bound)


def _decrypt(ctx, feed, landed: LandedFile) -> DecryptedFile:
    """The plaintext of an encrypted landed file (its checksum companion, if any, is of it)."""
    if not feed.decrypt_key_file:
        raise openpgp.OpenPgpFailed(
            "decrypt-failed",
            f"{landed.path.name} is OpenPGP-encrypted (by its name) and the feed has no decrypt_key_file",
        )
    fd = openpgp.decrypt(
        landed.fd, ctx.config.daemon.state_dir, feed.decrypt_key_file, feed.decrypt_passphrase_file,
        feed.verify_key_file,
    )  # fmt: skip
    return DecryptedFile(landed, fd, openpgp.inner_name(landed.path.name))


def ingest_file(ctx: RunContext, partner, feed, path: Path, force=False, dry_run=False) -> RunRecord | DryRunReport:
    """`dropd ingest`: import a local file as if it had been dropped, count file included.

    A count file beside it (`<stem>_count.txt`) is verified as for a dropped file; with
    `count_file = "required"` and none there the run fails at once (nothing waits).
    """
    count_file = count_files.present_count_file(path) if feed.count_file != "off" else None
    checksum_file = checksums.present_checksum_file(path) if feed.checksum_file != "off" else None
    reason = None
    if count_file is None and feed.count_file == "required":
        companion = count_files.count_file_for(path).name
        reason = f'count-file-missing: {companion} is required (count_file = "required") and is not beside the file'
    elif checksum_file is None and feed.checksum_file == "required":
        reason = (
            f"checksum-file-missing: {path.name}.sha256 or {path.name}.md5 is required "
            '(checksum_file = "required") and neither is beside the file'
        )
    if reason is not None:
        if dry_run:
            return DryRunReport(path.name, None, [], reason)
        log.warning(
            "run.finished",
            partner=partner.name,
            feed=feed.name,
            file=path.name,
            status="failed",
            reason=reason.split(":", 1)[0],
        )
        return ctx.recorder(partner, feed, "ingest").once("failed", reason, path.name)
    return import_file(
        ctx, partner, feed, path, "ingest", force=force, dry_run=dry_run, manual=True,
        companions=Companions(count_file, checksum_file),
    )  # fmt: skip


def _import_landed(ctx, recorder: RunRecorder, partner, feed, landed: LandedFile, force, manual, companions, bound):
    store = ctx.store
    facts = inspect_file(landed)
    previous = crashes = None
    if not (force or recorder.dry):  # a re-drop is told apart before parsing; the claim below settles races
        with store.reading() as tx:
            previous = tx.ledger.imported_by(feed.name, facts.sha256)
            crashes = tx.runs.interruptions(feed.name, facts.sha256)
    if previous is None and crashes and crashes >= MAX_INTERRUPTIONS:
        recorder.start(landed.name, facts.sha256, facts.size)
        reason = (
            f"interrupted-repeatedly: the daemon stopped {crashes} times while importing this file (killed, or out "
            "of memory); it is set aside in failed/ and not tried again by itself. See the daemon log of those runs, "
            f"then import it by hand with `dropd ingest {feed.name} FILE --force` once the cause is fixed"
        )
        return _failed(ctx, recorder, partner, feed, landed, reason, manual, bound, companions)
    if previous is not None:
        record = recorder.once(
            "skipped", f"duplicate: identical to the file imported by run {previous}", landed.name, facts.sha256
        )
        bound.info("run.finished", run_id=record.id, status="skipped", reason="duplicate")
        if not manual:
            _dispose(ctx, partner, feed, landed, imported=True, companions=companions)
        return record

    run_id = recorder.start(landed.name, facts.sha256, facts.size)
    bound = bound.bind(run_id=run_id)
    ctx.tell(feed.name, f"run #{run_id}: importing {printable(landed.name)} ({facts.size:,} bytes)")
    bound.info("run.started", size=facts.size, encoding=facts.encoding)
    counts = None
    try:
        expected_rows = read_count(companions.count) if companions.count else None
        if companions.checksum:
            algorithm = checksums.verify(companions.checksum, landed, facts.sha256)
            bound.info("checksum.verified", algorithm=algorithm, checksum_file=companions.checksum.name)
        with CsvRows(landed, facts, feed.delimiter) as rows:
            kind = KINDS[feed.kind](FeedSetup(partner.name, feed.name, feed.options, ctx.config.daemon.timezone))
            with store.transaction(label=feed.name, commit=not recorder.dry) as tx:
                holder = recorder.claim(tx, landed.name, facts.sha256, force)
                if holder is not None:
                    raise ClaimedElsewhere(holder)
                counts = kind.run(tx, rows, recorder.row_errors(tx, rows.header))
                if expected_rows is not None and counts.rows != expected_rows:
                    raise FileRejected(
                        "count-mismatch",
                        f"the count file said {expected_rows:,} {'row' if expected_rows == 1 else 'rows'}, "
                        f"the file has {counts.rows:,}",
                    )
                if counts.rows and counts.rejected == counts.rows:
                    raise FileRejected(
                        "all-rows-rejected",
                        f"all {counts.rows} data rows were rejected; nothing was applied (see the error file)",
                    )
                recorder.succeed(tx, counts, facts.encoding_note)
    except ClaimedElsewhere as claimed:
        # Another instance imported this content while this one read it: nothing applied here.
        with store.transaction(label=feed.name) as tx:
            recorder.finish(tx, "skipped", f"duplicate: identical to the file imported by run {claimed.run_id}")
        bound.info("run.finished", status="skipped", reason="duplicate", by_run=claimed.run_id)
        if not manual:
            _dispose(ctx, partner, feed, landed, imported=True, companions=companions)
        return recorder.done()
    except (FileRejected, CsvStructureError) as exc:
        reason = f"{exc.code}: {exc.message}" if isinstance(exc, FileRejected) else f"malformed-row: {exc}"
        read_through = isinstance(exc, FileRejected) and exc.code in ("all-rows-rejected", "count-mismatch")
        rows_seen = counts if read_through else None
        return _failed(ctx, recorder, partner, feed, landed, reason, manual, bound, companions, rows_seen)
    except StoreUnavailable:
        recorder.unreached()
        raise  # nothing was applied; the file stays where it is for the run that comes after
    except Exception as exc:
        bound.exception("run.crashed")
        reason = f"internal-error: {type(exc).__name__}: {exc} (see the daemon log)"
        return _failed(ctx, recorder, partner, feed, landed, reason, manual, bound, companions)
    finally:
        recorder.close()
    if recorder.dry:
        return DryRunReport(landed.name, counts, recorder.error_file.pending, facts.encoding_note)
    bound.info(
        "run.finished", status="success", rows=counts.rows, applied=counts.applied, rejected=counts.rejected,
        **counts.details(),
    )  # fmt: skip
    if not manual:
        _dispose(ctx, partner, feed, landed, imported=True, companions=companions, error_csv=recorder.error_csv)
    return recorder.done()


def _failed(ctx, recorder: RunRecorder, partner, feed, landed, reason, manual, bound, companions=None, counts=None):
    """Record the run failed; `landed` is the file read, or the path of one that could not be.

    `counts`, when the file was read through (all rows rejected), are recorded with it.
    """
    name = landed.name
    recorder.fail(reason, counts)
    if recorder.dry:
        return DryRunReport(name, None, recorder.error_file.pending if recorder.error_file else [], reason)
    bound.warning("run.finished", status="failed", reason=reason)
    if not manual:
        _dispose(
            ctx,
            partner,
            feed,
            landed,
            imported=False,
            companions=companions,
            error_csv=recorder.error_csv,
            reason=reason,
        )
    return recorder.done()


def _dispose(
    ctx, partner, feed, landed: LandedFile | Path, imported: bool, companions: "Companions | None" = None,
    error_csv: str | None = None, reason: str | None = None,
) -> None:  # fmt: skip
    """After the commit: archive or delete an imported file; move a failed one to `failed/`.

    Its companions (count, checksum, marker) go wherever it goes. A data file whose name no longer leads to
    the file that was read (replaced meanwhile) is left alone: the next look at the folder
    sees the new file as the new arrival it is. With `error_csv` (rows were rejected) or
    `reason` (the run failed), the partner gets `<name>.errors.csv` beside the file.
    """
    for companion in companions.paths if companions else ():
        if companion.exists():
            _dispose(ctx, partner, feed, companion, imported)
    path = landed.path if isinstance(landed, LandedFile) else landed
    context = dict(partner=partner.name, feed=feed.name, file=path.name)
    if isinstance(landed, LandedFile) and not landed.still_in_place():
        log.warning("file.replaced", **context, message="the file was replaced while it was imported; left in place")
        return
    archive = landing.archive_dir(ctx.config.daemon.drop_root, partner, feed)
    try:
        if not imported:
            placed = landing.move_aside(path, path.parent / landing.FAILED_FOLDER, utc_now())
            log.info("file.failed_aside", **context, to=placed.name)
        elif feed.after_import == "delete":
            path.unlink(missing_ok=True)
            log.info("file.deleted", **context)
            placed = landing.free_name_in(archive, path, utc_now())
        else:
            placed = landing.move_aside(path, archive, utc_now())
            log.info("file.archived", **context, to=placed.name)
    except OSError as exc:
        # The run is recorded already; a file that cannot be moved stays where it is, and as a
        # known content (the ledger) it is skipped as a duplicate, never imported twice.
        log.error("file.dispose_failed", **context, error=exc.strerror or str(exc))
        return
    if feed.error_report and (error_csv or reason):
        _report_to_partner(placed, error_csv, reason, context)


def _report_to_partner(placed: Path, error_csv: str | None, reason: str | None, context: dict) -> None:
    """`<name>.errors.csv` beside the archived or failed file: the run's error CSV, or for a
    file that failed as a whole, one line with the reason. Written under a hidden temporary
    name and renamed, so a partner never downloads half of it."""
    report = landing.report_path_for(placed)
    temp = report.parent / our_temp_name()
    report.parent.mkdir(parents=True, exist_ok=True)
    try:
        if error_csv:
            shutil.copyfile(error_csv, temp)
        else:
            code, _, message = reason.partition(": ")
            with open(temp, "w", encoding="utf-8-sig", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["row", "code", "failure_type", "message"])
                writer.writerow(spreadsheet_row(["", code, "file", message or code]))
        os.chmod(temp, 0o640)
        os.replace(temp, report)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        log.warning("file.error_report_failed", **context, error=exc.strerror or str(exc))
        return
    log.info("file.error_report", **context, report=report.name)


def run_feed(ctx: RunContext, partner, feed, trigger: str, force=False) -> list[RunRecord]:
    """One pass over the feed's landing folder, as `files` says: newest only, or each in turn."""
    folder = landing.landing_dir(ctx.config.daemon.drop_root, partner, feed)
    present = [path for path in landing.feed_files(folder, feed.prefix) if not checksums.is_companion(feed, path.name)]
    files = [path for path in present if ctx.settled is None or ctx.settled(path)]
    if not files:
        orphaned = _expire_orphan_counts(ctx, partner, feed, trigger, folder, present)
        orphaned += _late_checksums(ctx, partner, feed, trigger, folder, present)
        if trigger in ("arrival", "count-wait") or orphaned:
            return orphaned
        reason = f"no-file: no complete file starting with {feed.prefix!r} in {feed.path}"
        if present and ctx.settles_in is not None:
            waiting = "; ".join(f"{path.name}, {ctx.settles_in(path)}" for path in present)
            reason += f" ({len(present)} file{'s' if len(present) > 1 else ''} still arriving: {waiting})"
        return [ctx.recorder(partner, feed, trigger).once("skipped", reason)]
    records = []
    if feed.files == "most_recent":
        newest = files[-1]
        for older in files[:-1]:
            record = ctx.recorder(partner, feed, trigger).once("skipped", f"superseded by {newest.name}", older.name)
            archive = landing.archive_dir(ctx.config.daemon.drop_root, partner, feed)
            companions = [count_files.present_count_file(older), checksums.present_checksum_file(older),
                          checksums.marker_for(feed, older)]  # fmt: skip
            for superseded in [path for path in (older, *companions) if path is not None and path.exists()]:
                context = dict(partner=partner.name, feed=feed.name, file=superseded.name)
                try:
                    target = landing.move_aside(superseded, archive, utc_now())
                except OSError as exc:
                    log.error("file.dispose_failed", **context, error=exc.strerror or str(exc))
                    continue
                log.info("file.superseded", **context, to=target.name)
            records.append(record)
        files = [newest]
    for path in files:
        records += _run_one(ctx, partner, feed, trigger, path, force)
    return (
        records
        + _expire_orphan_counts(ctx, partner, feed, trigger, folder, present)
        + _late_checksums(ctx, partner, feed, trigger, folder, present)
    )


def _run_one(ctx, partner, feed, trigger: str, path: Path, force: bool) -> list[RunRecord]:
    """One data file: imported, or left waiting for its marker or companions, or failed
    because a required companion never came."""
    marker = checksums.marker_for(feed, path)
    if marker is not None and not marker.exists():
        log.info("run.waiting_for_marker", partner=partner.name, feed=feed.name, file=path.name, marker=marker.name)
        return []
    count, checksum = count_files.decide(feed, path), checksums.decide(feed, path)
    if count.wait or checksum.wait:
        for decision, event in ((count, "run.waiting_for_count_file"), (checksum, "run.waiting_for_checksum_file")):
            if decision.wait:
                log.info(event, partner=partner.name, feed=feed.name, file=path.name, seconds=round(decision.wait))
        _retry_later(ctx, max(count.wait, checksum.wait))
        return []
    if count.missing:
        return [_missing_companion(ctx, partner, feed, trigger, path, "count-file-missing",
                f"no {count_files.count_file_for(path).name} arrived within count_wait")]  # fmt: skip
    if checksum.missing:
        return [_missing_companion(ctx, partner, feed, trigger, path, "checksum-file-missing",
                f"neither {path.name}.sha256 nor {path.name}.md5 arrived within checksum_wait")]  # fmt: skip
    companions = Companions(count.companion, checksum.companion, marker)
    return [import_file(ctx, partner, feed, path, trigger, force=force, companions=companions)]


def _retry_later(ctx: RunContext, seconds: float) -> None:
    if ctx.retry_later is not None:
        ctx.retry_later(seconds + 1)


def _missing_companion(ctx, partner, feed, trigger, path: Path, code: str, message: str) -> RunRecord:
    """A run that failed because a file never got its companion: recorded, file to failed/."""
    log.warning("run.finished", partner=partner.name, feed=feed.name, file=path.name, status="failed", reason=code)
    record = ctx.recorder(partner, feed, trigger).once("failed", f"{code}: {message}", path.name)
    _dispose(ctx, partner, feed, path, imported=False, reason=f"{code}: {message}")
    return record


def _expire_orphan_counts(ctx, partner, feed, trigger, folder: Path, data_files: list[Path]) -> list[RunRecord]:
    """Count files without a data file: a late companion of a file this feed imported already
    is checked against that run; the others fail once count_wait is over (files to failed/)."""
    records = _late_counts(ctx, partner, feed, trigger, folder, data_files)
    expired, next_due = count_files.orphans(feed, folder, data_files)
    if next_due:
        _retry_later(ctx, next_due)
    return records + [
        _missing_companion(
            ctx,
            partner,
            feed,
            trigger,
            path,
            "data-file-missing",
            f"{path.name} arrived but its data file did not within count_wait",
        )  # fmt: skip
        for path in expired
    ]


def _late_checksums(ctx, partner, feed, trigger, folder: Path, data_files: list[Path]) -> list[RunRecord]:
    """Checksum files and markers whose data file is gone: a SHA-256 that came after its file
    was imported is checked against that run (noted when it matches, a failed run says so when
    not: the data stays applied); the others, once checksum_wait is over, go to failed/."""
    names = {path.name for path in data_files}
    records = []
    for path in landing.feed_files(folder, feed.prefix):
        if not checksums.is_companion(feed, path.name):
            continue
        data_name = checksums.data_name_of(feed, path.name)
        if data_name in names:
            continue
        with ctx.store.reading() as tx:
            imported = tx.runs.imported_file(feed.name, data_name.rsplit(".", 1)[0])
        context = dict(partner=partner.name, feed=feed.name, file=path.name)
        if imported is not None and imported.file == data_name and path.name.endswith(".sha256"):
            try:
                algorithm, expected = checksums.expected_digest(path, data_name)
                problem = None if expected == imported.sha256 else (
                    f"checksum-mismatch: {path.name} came after run #{imported.id} imported {data_name}: it says "
                    f"{algorithm} {expected}, the file had {imported.sha256}; the data stays applied"
                )  # fmt: skip
            except FileRejected as rejected:
                problem = f"{rejected.code}: {rejected.message}"
            log.info("checksum.late", **context, run_id=imported.id, matches=problem is None)
            if problem is None:
                with ctx.store.transaction(label=feed.name) as tx:
                    tx.runs.note(imported.id, {"late_checksum_file": path.name})
            else:
                records.append(ctx.recorder(partner, feed, trigger).once("failed", problem, path.name))
            _dispose(ctx, partner, feed, path, imported=problem is None)
        elif time.time() - path.stat().st_mtime > feed.checksum_wait:
            log.warning("file.orphan_companion", **context, message=f"no {data_name} came with it")
            _dispose(ctx, partner, feed, path, imported=False)
    return records


def _late_counts(ctx, partner, feed, trigger, folder: Path, data_files: list[Path]) -> list[RunRecord]:
    """Optional count files that came after their data file was imported (seed 003 lets a
    partner send it later): matching, the count is noted on that run; not matching, a failed
    run says so (admin and the feed's addresses hear of it: the data stays applied)."""
    if feed.count_file != "optional":
        return []
    records = []
    for path in count_files.orphans(feed, folder, data_files, clock=lambda: float("inf"))[0]:
        stem = path.name[: -len(COUNT_SUFFIX)]
        with ctx.store.reading() as tx:
            imported = tx.runs.imported_file(feed.name, stem)
        if imported is None:
            continue
        try:
            count = read_count(path)
        except FileRejected as rejected:
            count, problem = None, f"{rejected.code}: {rejected.message}"
        bound = log.bind(partner=partner.name, feed=feed.name, file=path.name, run_id=imported.id)
        if count is not None and count == imported.rows_in_file:
            with ctx.store.transaction(label=feed.name) as tx:
                tx.runs.note(imported.id, {"late_count_file": path.name, "late_count": count})
            bound.info("count_file.late", matches=True)
        else:
            if count is not None:
                problem = (
                    f"count-mismatch: {path.name} came after run #{imported.id} imported {imported.file}: it says "
                    f"{count:,} rows, the file had {imported.rows_in_file or 0:,}; the data stays applied"
                )
            bound.warning("count_file.late", matches=False, reason=problem)
            records.append(ctx.recorder(partner, feed, trigger).once("failed", problem, path.name))
        _dispose(ctx, partner, feed, path, imported=count is not None and count == imported.rows_in_file)
    return records
