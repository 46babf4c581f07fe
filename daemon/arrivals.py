"""Which landed files are complete, and telling the runner when one arrives.

Files uploaded through our servers are complete the moment they are handed off. Files put
in a landing folder by other means (the organisation's own jobs) count once no process has
them open for writing and they are unchanged for `quiet_period`.

"Open for writing" is asked of the kernel: a read lease (F_SETLEASE) is refused exactly
while some process holds the file open for writing. Where the kernel will not say (another
user's file without CAP_LEASE), a file created and not yet closed-after-write counts as
open. Watchdog listens for creation, close-after-write, moves and deletions only: not for
every write, which would cost a Python event per 32 KiB of every upload.
"""

import errno
import fcntl
import os
import threading
import time
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

from daemon.uploads import is_temporary_name

log = structlog.get_logger("dropd.arrivals")

WATCHED_EVENTS = [FileCreatedEvent, DirCreatedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent]


def has_writer(path: Path) -> bool | None:
    """True while a process has `path` open for writing, False when none has, None if unknown."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
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


class Arrivals:
    def __init__(self, quiet_period: float, on_arrival, clock=time.time):
        self.quiet_period = quiet_period
        self._on_arrival = on_arrival
        self._clock = clock
        self._lock = threading.Lock()
        self._handed_off: dict[Path, tuple[int, int]] = {}
        self._open_for_writing: set[Path] = set()
        self._last_event: dict[Path, float] = {}
        self._due: dict[Path, float] = {}
        self._stop = threading.Event()
        self._observer = None
        self._checker = None

    # Evidence -------------------------------------------------------------------------------

    def handed_off(self, path: Path) -> None:
        """Our own server finished this upload: complete now."""
        try:
            info = path.stat()
        except FileNotFoundError:
            return
        with self._lock:
            self._handed_off[path] = (info.st_size, info.st_mtime_ns)
            self._open_for_writing.discard(path)
        self._on_arrival(path)

    def _changed(self, path: Path, still_open: bool) -> None:
        """A file was created (`still_open`: its writer has not closed it yet) or closed after
        writing; either way its quiet period starts now."""
        with self._lock:
            if still_open:
                self._open_for_writing.add(path)
            else:
                self._open_for_writing.discard(path)
            now = self._clock()
            self._last_event[path] = now
            self._due[path] = now + self.quiet_period

    def _gone(self, path: Path) -> None:
        with self._lock:
            self._open_for_writing.discard(path)
            self._last_event.pop(path, None)
            self._due.pop(path, None)
            self._handed_off.pop(path, None)

    def is_complete(self, path: Path) -> bool:
        try:
            info = path.stat()
        except FileNotFoundError:
            return False
        with self._lock:
            if self._handed_off.get(path) == (info.st_size, info.st_mtime_ns):
                return True
            marked_open = path in self._open_for_writing
            last = max(info.st_mtime, self._last_event.get(path, 0.0))
        if self._clock() - last < self.quiet_period:
            return False
        writer = has_writer(path)
        return not writer if writer is not None else not marked_open

    # Watching -------------------------------------------------------------------------------

    def watch(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(_Events(self), str(folder), recursive=True, event_filter=WATCHED_EVENTS)
        self._observer.daemon = True
        self._observer.start()
        self._checker = threading.Thread(target=self._check_due, name="arrivals", daemon=True)
        self._checker.start()

    def _check_due(self) -> None:
        while not self._stop.wait(0.25):
            now = self._clock()
            with self._lock:
                ready = [path for path, due in self._due.items() if due <= now]
            for path in ready:
                if self.is_complete(path):
                    with self._lock:
                        self._due.pop(path, None)
                    self._on_arrival(path)
                else:
                    with self._lock:
                        if path in self._due:
                            self._due[path] = now + self.quiet_period

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)


class _Events(FileSystemEventHandler):
    def __init__(self, arrivals: Arrivals):
        self.arrivals = arrivals

    @staticmethod
    def _relevant(path: str) -> Path | None:
        candidate = Path(path)
        return None if is_temporary_name(candidate.name) else candidate

    def on_created(self, event):
        if not event.is_directory and (path := self._relevant(event.src_path)):
            self.arrivals._changed(path, still_open=True)

    def on_closed(self, event):
        if not event.is_directory and (path := self._relevant(event.src_path)):
            self.arrivals._changed(path, still_open=False)

    def on_moved(self, event):
        if event.is_directory:
            return
        self.arrivals._gone(Path(event.src_path))
        if path := self._relevant(event.dest_path):
            self.arrivals._changed(path, still_open=False)

    def on_deleted(self, event):
        if not event.is_directory:
            self.arrivals._gone(Path(event.src_path))
