"""Which landed files are complete, and telling the runner once when each arrives.

Files uploaded through our servers are complete the moment they are handed off. Files put
in a landing folder by other means (the organisation's own jobs) count once no process has
them open for writing and they are unchanged for `quiet_period`.

"Open for writing" is asked of the kernel: a read lease (F_SETLEASE) is refused exactly
while some process holds the file open for writing. Where the kernel will not say (another
user's file without CAP_LEASE), a file created and not yet closed-after-write counts as
open. Watchdog listens for creation, close-after-write, moves and deletions only: not for
every write, which would cost a Python event per 32 KiB of every upload.

One file is one arrival. A file is known by its identity (device, inode, size): our own
hand-off, the rename event inotify reports for it, and later looks at the folder all name
the same identity and report it once. Timestamps do not count (lftp sets the modification
time with MFMT after its upload); a close after writing by another process does, and makes
the file wait for its quiet period again.

inotify misses what happens while the daemon is stopped, on other machines sharing the
folder, and after its queue overflows; `rescan` is the reconcile that finds those files.
It runs at start, every `daemon.rescan`, and at once when watchdog reports that the kernel's
inotify queue overflowed (watchdog only logs that, so a filter on its logger listens).
"""

import errno
import fcntl
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from daemon.temp_names import is_temporary_name

log = structlog.get_logger("dropd.arrivals")

WATCHED_EVENTS = [FileCreatedEvent, DirCreatedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent]
WATCHDOG_INOTIFY_LOGGER = "watchdog.observers.inotify_c"
Identity = tuple[int, int, int]


def has_writer(path: Path) -> bool | None:
    """True while a process has `path` open for writing, False when none has, None if unknown."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno == errno.EAGAIN else None
    else:
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(descriptor)


def identity_of(path: Path) -> Identity | None:
    """(device, inode, size) of a regular file, None for anything else or nothing."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_dev, info.st_ino, info.st_size


class Arrivals:
    def __init__(
        self,
        quiet_period: float,
        on_arrival: Callable[[Path], None],
        wanted: Callable[[Path], bool] = lambda path: True,
        landed: Callable[[], Iterable[Path]] = lambda: (),
        rescan_every: float = 60.0,
        clock=time.time,
    ):
        self.quiet_period = quiet_period
        self.rescan_every = rescan_every
        self._on_arrival = on_arrival
        self._wanted = wanted
        self._landed = landed
        self._clock = clock
        self._rescan_now = threading.Event()
        self._overflow_filter = _OverflowListener(self._rescan_now)
        self._lock = threading.Lock()
        self._handed_off: dict[Path, Identity] = {}
        self._reported: dict[Path, Identity] = {}
        self._open_for_writing: set[Path] = set()
        self._last_event: dict[Path, float] = {}
        self._due: dict[Path, float] = {}
        self._stop = threading.Event()
        self._observer = None
        self._checker = None

    # Evidence -------------------------------------------------------------------------------

    def handed_off(self, path: Path) -> None:
        """Our own server finished this upload: complete now."""
        identity = identity_of(path)
        if identity is None:
            return
        with self._lock:
            self._handed_off[path] = identity
            self._open_for_writing.discard(path)
            self._due.pop(path, None)
        self._report(path, identity, "upload")

    def _changed(self, path: Path, written: bool) -> None:
        """inotify saw `path` appear (created, or moved here) or closed after writing.

        `written`: a process wrote the file; what we knew about it no longer holds.
        """
        if not self._wanted(path):
            return
        identity = identity_of(path)
        with self._lock:
            self._open_for_writing.discard(path)
            if written:
                self._handed_off.pop(path, None)
                self._reported.pop(path, None)
            elif identity is not None and identity in (self._handed_off.get(path), self._reported.get(path)):
                return  # the rename that published our own upload, or a file already reported
            self._schedule(path)

    def _created(self, path: Path) -> None:
        if self._wanted(path):
            with self._lock:
                self._open_for_writing.add(path)
                self._schedule(path)

    def _schedule(self, path: Path) -> None:
        now = self._clock()
        self._last_event[path] = now
        self._due[path] = now + self.quiet_period

    def _gone(self, path: Path) -> None:
        with self._lock:
            self._forget(path)

    def _forget(self, path: Path) -> None:
        self._open_for_writing.discard(path)
        self._last_event.pop(path, None)
        self._due.pop(path, None)
        self._handed_off.pop(path, None)
        self._reported.pop(path, None)

    def is_complete(self, path: Path) -> bool:
        identity = identity_of(path)
        if identity is None:
            return False
        with self._lock:
            if self._handed_off.get(path) == identity:
                return True
            marked_open = path in self._open_for_writing
        last = self._last_change(path)
        if last is None:
            return False
        if self._clock() - last < self.quiet_period:
            return False
        writer = has_writer(path)
        return not writer if writer is not None else not marked_open

    def _last_change(self, path: Path) -> float | None:
        """When the file last changed, by its mtime or our last event for it; None if gone."""
        with self._lock:
            last = self._last_event.get(path, 0.0)
        try:
            return max(last, os.lstat(path).st_mtime)
        except OSError:
            return None

    def settles_in(self, path: Path) -> str:
        """For a file that is not complete yet, a few words on when it will be."""
        last = self._last_change(path)
        if last is None:
            return "gone"
        if has_writer(path):
            return "still being written"
        return f"complete in about {max(1, round(self.quiet_period - (self._clock() - last)))} s"

    def _report(self, path: Path, identity: Identity, via: str) -> None:
        """Tell the runner, once per identity of the file."""
        with self._lock:
            if self._reported.get(path) == identity:
                return
            self._reported[path] = identity
        log.info("file.arrived", path=str(path), size=identity[2], via=via)
        self._on_arrival(path)

    # Reconciling ----------------------------------------------------------------------------

    def rescan(self, present: Iterable[Path]) -> None:
        """Take note of every wanted file in `present` that has not been reported as it is now;
        each is reported once it is complete. Entries for files no longer present are dropped."""
        identities = {path: identity_of(path) for path in present if self._wanted(path)}
        with self._lock:
            for path in set(self._reported) - set(identities):
                self._forget(path)
            noticed = [
                path
                for path, identity in identities.items()
                if path not in self._due and self._reported.get(path) != identity
            ]
            for path in noticed:
                self._due[path] = self._clock()
        if noticed:
            log.info("arrivals.rescanned", noticed=len(noticed))

    def _rescan_periodically(self) -> None:
        while True:
            self._rescan_now.wait(self.rescan_every)
            if self._stop.is_set():
                return
            self._rescan_now.clear()
            try:
                self.rescan(self._landed())
            except Exception:
                log.exception("arrivals.rescan_failed")

    # Watching -------------------------------------------------------------------------------

    def watch(self, folder: Path) -> None:
        """Watch `folder` and everything below it; reconcile what is there already at once."""
        folder.mkdir(parents=True, exist_ok=True)
        logging.getLogger(WATCHDOG_INOTIFY_LOGGER).addFilter(self._overflow_filter)
        self._observer = Observer()
        self._observer.schedule(_Events(self), str(folder), recursive=True, event_filter=WATCHED_EVENTS)
        self._observer.daemon = True
        self._observer.start()
        self.rescan(self._landed())
        self._checker = threading.Thread(target=self._check_due, name="arrivals", daemon=True)
        self._checker.start()
        threading.Thread(target=self._rescan_periodically, name="rescan", daemon=True).start()

    def _check_due(self) -> None:
        while not self._stop.wait(0.25):
            now = self._clock()
            with self._lock:
                ready = [path for path, due in self._due.items() if due <= now]
            for path in ready:
                identity = identity_of(path)
                if identity is None:
                    self._gone(path)
                elif self.is_complete(path):
                    with self._lock:
                        self._due.pop(path, None)
                    self._report(path, identity, "watch")
                else:
                    with self._lock:
                        if path in self._due:
                            self._due[path] = now + self.quiet_period

    def stop(self) -> None:
        self._stop.set()
        self._rescan_now.set()
        logging.getLogger(WATCHDOG_INOTIFY_LOGGER).removeFilter(self._overflow_filter)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)


class _OverflowListener(logging.Filter):
    """Sets `event` when watchdog logs that the inotify queue overflowed (events were lost)."""

    def __init__(self, event: threading.Event):
        super().__init__()
        self.event = event

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Inotify queue overflowed"):
            log.warning("arrivals.events_lost", message="inotify queue overflowed; rescanning landing folders")
            self.event.set()
        return True


class _Events(FileSystemEventHandler):
    def __init__(self, arrivals: Arrivals):
        self.arrivals = arrivals

    @staticmethod
    def _relevant(path: str) -> Path | None:
        candidate = Path(path)
        return None if is_temporary_name(candidate.name) else candidate

    def on_created(self, event):
        if not event.is_directory and (path := self._relevant(event.src_path)):
            self.arrivals._created(path)

    def on_closed(self, event):
        if not event.is_directory and (path := self._relevant(event.src_path)):
            self.arrivals._changed(path, written=True)

    def on_moved(self, event):
        if event.is_directory:
            return
        self.arrivals._gone(Path(event.src_path))
        if path := self._relevant(event.dest_path):
            self.arrivals._changed(path, written=False)

    def on_deleted(self, event):
        if not event.is_directory:
            self.arrivals._gone(Path(event.src_path))
