"""Recording a run: its row in the store, its error CSV, the file ledger, and the hand-off.

Every run — an import, a skipped look at an empty folder, an export — is recorded through a
`RunRecorder`. A run that does work starts `running`, then finishes inside the transaction
that applied the work (so the record and the data commit together) or fails in one of its
own. After the commit, `done()` reads the final record back, queues its recap
(`notify(tx, record)`) in a transaction of its own, and hands the record to the
`RunFinished` subscribers once. The recap is not queued in the run's own transaction: a
recap that cannot be composed (a partner's file name no mail header can hold was one) must
never undo, or hold `running`, the run it reports on; a daemon killed between the two
commits loses that one recap, never the run.
"""

import csv
import datetime
import itertools
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.clock import utc_now, utc_stamp
from daemon.handoff import Handoff
from daemon.runs.spreadsheet import spreadsheet_row
from daemon.store.records import RunRecord
from handlers.base import ImportCounts, RowErrors

log = structlog.get_logger("dropd.runs")

ERROR_BATCH = 1000
"""Row errors are written to the store this many at a time, inside the run's transaction."""


class RunFinished(Handoff[RunRecord]):
    def __init__(self):
        super().__init__("run")


class RunProgress(Handoff[tuple[str, str]]):
    """(feed, what its run is doing now, in a few words), for whoever waits on the run
    (`dropd run-now`): queued, importing a file, delivering, a retry and when the next is."""

    def __init__(self):
        super().__init__("progress")

    def tell(self, feed: str, text: str) -> None:
        self.publish((feed, text), feed=feed)


@dataclass(frozen=True)
class RunSubject:
    """What a run is about: the partner, the feed and what started it, and who runs it."""

    partner: str
    feed: str
    kind: str
    trigger: str
    instance: str | None = None
    lease: float = 30.0


class ErrorFile:
    """The run's error CSV (UTF-8 with BOM, for Excel), made on first use, and the rows not yet
    in the store. With no path (a dry run) the errors are only collected."""

    def __init__(self, path: Path | None, header: list[str]):
        self.path = path
        self.header = header
        self._handle = None
        self._writer = None
        self.pending: list[tuple] = []

    def write(self, row: int, code: str, failure_type: str, message: str, values) -> None:
        self.pending.append((row, code, failure_type, message))
        if self.path is None:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115 (open for the whole run)
            self._writer = csv.writer(self._handle)
            self._writer.writerow(spreadsheet_row(["row", "code", "failure_type", "message", *self.header]))
        self._writer.writerow(spreadsheet_row([row, code, failure_type, message, *values]))

    def take_pending(self) -> list[tuple]:
        pending, self.pending = self.pending, []
        return pending

    def recorded(self, batch: int):
        """The errors written to the file so far, read back, in lists of `batch`: a failed
        run's transaction took those it had stored with it."""
        if self._handle is None:
            return
        with open(self.path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            while chunk := [(int(r[0]), r[1], r[2], r[3]) for r in itertools.islice(reader, batch)]:
                yield chunk

    @property
    def written(self) -> str | None:
        return str(self.path) if self._handle is not None else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class _Unreached:
    """Runs the store went away under, per store, until it answers again: their records could
    not be finished then (the store was gone) and would stay `running` while this daemon lives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: weakref.WeakKeyDictionary[object, list[int]] = weakref.WeakKeyDictionary()

    def add(self, store: object, run_id: int) -> None:
        with self._lock:
            self._runs.setdefault(store, []).append(run_id)

    def take(self, store: object) -> list[int]:
        with self._lock:
            return self._runs.pop(store, [])

    def give_back(self, store: object, run_ids: list[int]) -> None:
        with self._lock:
            self._runs.setdefault(store, []).extend(run_ids)


_unreached = _Unreached()


class RunRecorder:
    def __init__(self, store, finished: RunFinished | None, errors_dir: Path | None, subject: RunSubject, notify=None):
        """`errors_dir` None records nothing at all: a dry run. `notify(tx, record)` is called
        inside the transaction that finishes the run."""
        self.store = store
        self.finished = finished
        self.notify = notify
        self.errors_dir = errors_dir
        self.subject = subject
        self.run_id: int | None = None
        self.error_file: ErrorFile | None = None

    @property
    def dry(self) -> bool:
        return self.errors_dir is None

    def once(self, status: str, reason: str, file: str | None = None, sha256: str | None = None) -> RunRecord:
        """A run that did no work (skipped, or failed before it started), recorded in one step."""
        self.start(file, sha256)
        with self.store.transaction(label=self.subject.feed) as tx:
            self.finish(tx, status, reason)
        return self.done()

    def start(self, file: str | None, sha256: str | None, size: int | None = None) -> int | None:
        if self.dry:
            return None
        s = self.subject
        lease_until = utc_stamp(utc_now() + datetime.timedelta(seconds=s.lease))
        unreached = _unreached.take(self.store)
        try:
            with self.store.transaction(label=s.feed) as tx:
                tx.runs.fail_unreached(unreached)
                self.run_id = tx.runs.start(
                    s.partner, s.feed, s.kind, s.trigger, file, sha256, size, s.instance, lease_until
                )
        except BaseException:
            _unreached.give_back(self.store, unreached)
            raise
        return self.run_id

    def unreached(self) -> None:
        """The store went away during this run (nothing of it was applied): its record is
        failed as `store-unreachable` by the next run that reaches the store."""
        if self.run_id is not None:
            _unreached.add(self.store, self.run_id)

    def row_errors(self, tx, header: list[str]) -> RowErrors:
        """Where the kind reports rows: to the error CSV at once, to the store in batches."""
        path = None if self.dry else self.errors_dir / f"run-{self.run_id}-{self.subject.feed}.csv"
        error_file = self.error_file = ErrorFile(path, header)

        def write(*error):
            error_file.write(*error)
            if not self.dry and len(error_file.pending) >= ERROR_BATCH:
                tx.runs.add_errors(self.run_id, error_file.take_pending())

        return RowErrors(write)

    def claim(self, tx, file: str, sha256: str, force: bool) -> int | None:
        """First in the run's transaction: the ledger entry that makes this run the one that
        imports this content (`force` takes it over). Returns the run that has it instead."""
        if self.dry:
            return None
        if force:
            tx.ledger.record(self.subject.feed, sha256, file, self.run_id)
            return None
        return tx.ledger.claim(self.subject.feed, sha256, file, self.run_id)

    def succeed(self, tx, counts: ImportCounts, note: str | None) -> None:
        """Inside the run's transaction: the rest of the row errors and the final record
        commit with the data (and the ledger entry `claim` took)."""
        if self.dry:
            return
        if self.error_file is not None:
            tx.runs.add_errors(self.run_id, self.error_file.take_pending())
            self.error_file.close()  # complete on disk before the recap attaches it
        self.finish(tx, "success", note, counts.rows, counts.applied, counts.rejected, counts.details(), self.error_csv)

    def fail(self, reason: str, counts: ImportCounts | None = None) -> None:
        """Record the run failed, in a transaction of its own; `counts` when the file was read
        through (every row rejected) are recorded with it."""
        if self.error_file is not None:
            self.error_file.close()  # complete on disk before anything copies it
        if self.dry:
            return
        rows = (counts.rows, 0, counts.rejected, counts.details()) if counts else (None, None, None, None)
        with self.store.transaction(label=self.subject.feed) as tx:
            if self.error_file is not None:  # the rows rejected before the run failed, for its recap and page
                for errors in self.error_file.recorded(ERROR_BATCH):
                    tx.runs.add_errors(self.run_id, errors)
            self.finish(tx, "failed", reason, *rows, error_file=self.error_csv)

    def finish(
        self, tx, status: str, reason: str | None = None, rows_in_file: int | None = None,
        rows_applied: int | None = None, rows_rejected: int | None = None, details: dict | None = None,
        error_file: str | None = None,
    ) -> None:  # fmt: skip
        """The run's final record, in `tx` (with whatever the run applied)."""
        tx.runs.finish(self.run_id, status, reason, rows_in_file, rows_applied, rows_rejected, details, error_file)

    @property
    def error_csv(self) -> str | None:
        return self.error_file.written if self.error_file else None

    def close(self) -> None:
        if self.error_file is not None:
            self.error_file.close()

    def done(self) -> RunRecord:
        """The final record: its recap queued, then handed to the `RunFinished` subscribers."""
        with self.store.reading() as tx:
            record = tx.runs.get(self.run_id)
        if self.notify is not None:
            try:
                with self.store.transaction(label=self.subject.feed) as tx:
                    self.notify(tx, record)
            except Exception:
                log.exception("recap.failed", run_id=record.id, feed=record.feed)
        if self.finished is not None:
            self.finished.publish(record, run_id=record.id, feed=record.feed)
        return record


@dataclass
class RunContext:
    store: object
    config: object
    settled: object = None
    """A callable telling whether a landed file is complete; None treats every file as complete."""
    retry_later: object = None
    """A callable(seconds) asking for another run of the feed later (files waiting for count files)."""
    settles_in: object = None
    """A callable(path) saying in a few words when an incomplete file will be complete."""
    finished: RunFinished | None = None
    """Where finished runs are handed off after their commit."""
    notify: object = None
    """A callable(tx, record) queuing a run's recap in the transaction that finishes it."""
    progress: RunProgress | None = None
    """Where a run says what it is doing (`tell`), for `dropd run-now`."""

    def tell(self, feed: str, text: str) -> None:
        if self.progress is not None:
            self.progress.tell(feed, text)

    def recorder(self, partner, feed, trigger: str, dry_run: bool = False) -> RunRecorder:
        errors_dir = None if dry_run else self.config.daemon.state_dir / "errors"
        daemon = self.config.daemon
        subject = RunSubject(partner.name, feed.name, feed.kind, trigger, daemon.instance, daemon.lease)
        return RunRecorder(self.store, self.finished, errors_dir, subject, self.notify)
