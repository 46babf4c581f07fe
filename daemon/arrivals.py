"""Which landed files are complete, and telling the runner when one arrives.

Files uploaded through our servers are complete the moment they are handed off. Files put
in a landing folder by other means (the organisation's own jobs) are watched with
watchdog: such a file counts only once it is closed and unchanged for `quiet_period`. A
file found with no events seen (present at start) counts when its modification time is
older than the quiet period.
"""

import threading
import time
from pathlib import Path

import structlog
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from daemon.uploads import is_temporary_name

log = structlog.get_logger("dropd.arrivals")


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

    def _written(self, path: Path) -> None:
        """Someone wrote to the file: it is open for writing until a close-write is seen."""
        with self._lock:
            self._open_for_writing.add(path)
            self._last_event[path] = self._clock()
            self._due.pop(path, None)

    def _touched(self, path: Path) -> None:
        """Content or attributes changed; the quiet period starts again (open or not)."""
        with self._lock:
            now = self._clock()
            self._last_event[path] = now
            if path not in self._open_for_writing:
                self._due[path] = now + self.quiet_period

    def _finished_writing(self, path: Path) -> None:
        with self._lock:
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
            if path in self._open_for_writing:
                return False
            last = max(info.st_mtime, self._last_event.get(path, 0.0))
        return self._clock() - last >= self.quiet_period

    # Watching -------------------------------------------------------------------------------

    def watch(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(_Events(self), str(folder), recursive=True)
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
        # Created events are also made up for files found in a folder that was just created,
        # closed before its watch existed; so creation alone does not mean "open".
        if not event.is_directory and (path := self._relevant(event.src_path)):
            self.arrivals._touched(path)

    on_attrib = on_created

    def on_modified(self, event):
        if not event.is_directory and (path := self._relevant(event.src_path)):
            self.arrivals._written(path)

    def on_closed(self, event):
        if not event.is_directory and (path := self._relevant(event.src_path)):
            self.arrivals._finished_writing(path)

    def on_moved(self, event):
        if event.is_directory:
            return
        self.arrivals._gone(Path(event.src_path))
        if path := self._relevant(event.dest_path):
            self.arrivals._finished_writing(path)

    def on_deleted(self, event):
        if not event.is_directory:
            self.arrivals._gone(Path(event.src_path))
