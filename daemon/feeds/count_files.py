"""Companion count files: `list_count.txt` beside `list.csv`, holding the number of data rows.

`count_file = "off"` ignores them; `"optional"` checks one that is there when the run
starts; `"required"` makes the data file wait up to `count_wait` for it, and fails the run
(`count-file-missing`) when it never comes. A count file that arrives first waits the same
way for its data file.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

from daemon.feeds.csv_source import LandedFile, UnsafeFile
from daemon.runs.companions import COUNT_SUFFIX, count_name
from handlers.base import FileRejected


def count_file_for(data: Path) -> Path:
    return data.with_name(count_name(data.name))


def present_count_file(data: Path) -> Path | None:
    """The data file's count file when one is there. A data name so long that its count file's
    name would pass the file system's limit has none (the look would fail: ENAMETOOLONG)."""
    companion = count_file_for(data)
    try:
        return companion if companion.is_file() else None
    except OSError:
        return None


def is_count_file(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and name.endswith(COUNT_SUFFIX) and not name.startswith(".")


def read_count(path: Path) -> int:
    """The number in the count file; FileRejected (count-file-invalid) for anything else."""
    try:
        with LandedFile(path) as landed:
            raw = os.pread(landed.fd, 4096, 0)
    except UnsafeFile as exc:
        raise FileRejected("count-file-invalid", str(exc)) from None
    try:
        text = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        text = None
    if not text or not text.isascii() or not text.isdigit():
        shown = raw[:40].decode("utf-8", "replace")
        raise FileRejected("count-file-invalid", f"{path.name} must hold one whole number of data rows, not {shown!r}")
    return int(text)


@dataclass(frozen=True)
class CompanionDecision:
    """What a data file's companion (count or checksum file) means for its run now."""

    companion: Path | None
    """The companion to verify against, or None."""
    wait: float = 0.0
    """Seconds to wait for a required companion; the run leaves the data file for later."""
    missing: bool = False
    """A required companion never came."""


def decide(feed, data: Path, clock=time.time) -> CompanionDecision:
    if feed.count_file == "off":
        return CompanionDecision(None)
    companion = present_count_file(data)
    if companion is not None:
        return CompanionDecision(companion)
    if feed.count_file == "optional":
        return CompanionDecision(None)
    waited = clock() - data.stat().st_mtime
    if waited < feed.count_wait:
        return CompanionDecision(None, wait=feed.count_wait - waited)
    return CompanionDecision(None, missing=True)


def orphans(feed, folder: Path, data_files: list[Path], clock=time.time) -> tuple[list[Path], float]:
    """Count files whose data file has not come within count_wait, and the wait until the next is due."""
    if feed.count_file == "off" or not folder.is_dir():
        return [], 0.0
    stems = {path.stem for path in data_files}
    expired, next_due = [], 0.0
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not is_count_file(path.name, feed.prefix):
            continue
        if path.name[: -len(COUNT_SUFFIX)] in stems:
            continue
        remaining = feed.count_wait - (clock() - path.stat().st_mtime)
        if remaining <= 0:
            expired.append(path)
        else:
            next_due = min(next_due, remaining) if next_due else remaining
    return expired, next_due
