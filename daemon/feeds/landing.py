"""Landing folders: which files belong to a feed, and where they go after their run."""

import datetime
import hashlib
import itertools
import os
from pathlib import Path

from daemon.feeds.count_files import is_count_file
from daemon.runs.companions import COUNT_SUFFIX
from daemon.temp_names import is_temporary_name

FAILED_FOLDER = "failed"
REPORT_SUFFIX = ".errors.csv"
ARCHIVE_NAME_BYTES = 200
"""An archived or failed file's name at most: 255 (NAME_MAX) less room for a counter and
REPORT_SUFFIX."""


def landing_dir(drop_root: Path, partner, feed) -> Path:
    return drop_root / partner.name / feed.path.lstrip("/")


def archive_dir(drop_root: Path, partner, feed) -> Path:
    return drop_root / partner.name / feed.archive_path.lstrip("/")


def feed_folders(drop_root: Path, partner) -> dict[Path, str]:
    """Every folder the partner's feeds use (landing, failed/, archive; an export's outbox),
    with the feed using it: what the partner may not rename or remove."""
    folders = {}
    for feed in partner.feeds:
        folder = landing_dir(drop_root, partner, feed)
        used = [folder]
        if feed.direction == "import":
            used += [folder / FAILED_FOLDER, archive_dir(drop_root, partner, feed)]
        for path in used:
            folders.setdefault(path, feed.name)
    return folders


def is_feed_file(name: str, prefix: str) -> bool:
    """A data file of the feed: the prefix, not hidden, not a temporary, count or report file."""
    return (
        name.startswith(prefix)
        and not name.startswith(".")
        and not is_temporary_name(name)
        and not name.endswith((COUNT_SUFFIX, REPORT_SUFFIX))
    )


def feeds_for(config, path: Path) -> list:
    """The (partner, feed) pairs whose landing folder holds `path` as a data or count file."""
    return [
        (partner, feed)
        for partner, feed in config.feeds()
        if feed.direction == "import"
        and (is_feed_file(path.name, feed.prefix) or is_count_file(path.name, feed.prefix))
        and path.parent == landing_dir(config.daemon.drop_root, partner, feed)
    ]


def landed_files(config):
    """Every data and count file now in some feed's landing folder."""
    folders = {}
    for partner, feed in config.feeds():
        if feed.direction == "import":
            folders.setdefault(landing_dir(config.daemon.drop_root, partner, feed), []).append(feed.prefix)
    for folder, prefixes in folders.items():
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and any(
                is_feed_file(entry.name, prefix) or is_count_file(entry.name, prefix) for prefix in prefixes
            ):
                yield folder / entry.name


def feed_files(folder: Path, prefix: str) -> list[Path]:
    """Matching regular files, oldest first (modification time, then name)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    files = [
        (entry.stat().st_mtime_ns, entry.name)
        for entry in entries
        if entry.is_file(follow_symlinks=False) and is_feed_file(entry.name, prefix)
    ]
    return [folder / name for _, name in sorted(files)]


def archive_name_for(path: Path, when: datetime.datetime) -> str:
    """`StudentData_2018_09_30.csv` -> `StudentData_2018_09_30_20261123T021000Z.csv`.

    A name is at most ARCHIVE_NAME_BYTES long, so that the stamp, a counter and the partner's
    `.errors.csv` beside it always fit the file system's 255 bytes: a longer one keeps its
    beginning and its extension, and a short hash of the whole name tells it apart
    (`StudentData_xxx…~1a2b3c4d_20261123T021000Z.csv`)."""
    stamp = when.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    stem, suffix = path.stem, path.suffix
    if len(_bytes(suffix)) > 16:  # not an extension: part of the name
        stem, suffix = path.name, ""
    name = f"{stem}_{stamp}{suffix}"
    if len(_bytes(name)) <= ARCHIVE_NAME_BYTES:
        return name
    tag = hashlib.sha256(_bytes(path.name)).hexdigest()[:8]
    tail = f"~{tag}_{stamp}{suffix}"
    room = ARCHIVE_NAME_BYTES - len(_bytes(tail))
    kept = itertools.accumulate(len(_bytes(character)) for character in stem)
    return stem[: sum(1 for used in kept if used <= room)] + tail


def _bytes(name: str) -> bytes:
    """A file name as the file system holds it (undecodable bytes came in as surrogates)."""
    return name.encode("utf-8", "surrogateescape")


def free_name_in(folder: Path, path: Path, when: datetime.datetime) -> Path:
    """`path`'s timestamped name in `folder`, with a counter if that name is taken."""
    target = folder / archive_name_for(path, when)
    counter = 1
    while target.exists():
        target = folder / f"{Path(archive_name_for(path, when)).stem}-{counter}{path.suffix}"
        counter += 1
    return target


def move_aside(path: Path, folder: Path, when: datetime.datetime) -> Path:
    """Move `path` into `folder` under its timestamped name, never overwriting anything."""
    folder.mkdir(parents=True, exist_ok=True)
    target = free_name_in(folder, path, when)
    os.rename(path, target)
    return target


def report_path_for(placed: Path) -> Path:
    """Where the partner finds why `placed` (an archived or failed file) had errors."""
    return placed.with_name(placed.name + REPORT_SUFFIX)
