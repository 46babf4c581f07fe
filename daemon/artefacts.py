"""Run artefacts kept for `[daemon] keep_days`, then pruned: error files, error rows, mail bodies.

A run's record is kept for good (the history of every run); what it left behind is not. Runs
that started more than `keep_days` ago lose their error CSV (`<state_dir>/errors/...`), their
error rows in the store, and the bodies of the mail sent about them; the record says so by
having no error file any more. Files in the errors folder that no run names (a dry run, a run
cut short) go once they are as old. Partners' own `<name>.errors.csv` reports live in their
folders, beside the file they describe, and are theirs to remove.
"""

import datetime
import os
from pathlib import Path

import structlog

from daemon.clock import utc_now, utc_stamp
from daemon.periodic import Periodic

log = structlog.get_logger("dropd.artefacts")

PRUNE_EVERY = 3600.0


def prune(store, errors_dir: Path, keep_days: int, now: datetime.datetime | None = None) -> dict:
    """Prune what is older than `keep_days`; returns what was pruned (logged once if any)."""
    now = now or utc_now()
    cutoff = now - datetime.timedelta(days=keep_days)
    stamp = utc_stamp(cutoff)
    runs = files = 0
    while True:
        with store.reading() as tx:
            batch = tx.runs.artefacts_before(stamp)
        if not batch:
            break
        for _, path in batch:
            files += _remove(Path(path))
        with store.transaction(label="prune") as tx:
            tx.runs.forget_artefacts([run_id for run_id, _ in batch])
        runs += len(batch)
    files += _remove_old_files(errors_dir, cutoff.timestamp())
    with store.transaction(label="prune") as tx:
        mails = tx.outbox.forget_bodies_before(stamp)
    pruned = {"runs": runs, "files": files, "mails": mails}
    if any(pruned.values()):
        log.info("artefacts.pruned", keep_days=keep_days, **pruned)
    return pruned


def _remove(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0


def _remove_old_files(folder: Path, before: float) -> int:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < before:
            removed += _remove(Path(entry.path))
    return removed


class ArtefactPruner(Periodic):
    """`prune` every hour, with the keep_days of the config in force."""

    def __init__(self, store, config_source):
        super().__init__("prune", lambda: PRUNE_EVERY, self.prune_now, "artefacts.prune_failed")
        self._store = store
        self._config = config_source

    def prune_now(self) -> dict:
        daemon = self._config().daemon
        return prune(self._store, daemon.state_dir / "errors", daemon.keep_days)
