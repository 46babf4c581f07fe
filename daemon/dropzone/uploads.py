"""Atomic uploads: written under a hidden temporary name, renamed only on a good close.

Both protocol servers write every upload through `AtomicUpload`, so a partner (and the
watcher) never sees half a file under its real name. The temporary name
(`daemon/temp_names.py`) is short and fixed in shape, so that it fits any file-name limit
and is easy to ignore.
"""

import errno
import os
import threading
import time
from pathlib import Path

from daemon.temp_names import our_temp_name


class TransferCounter:
    """Counts open transfers so that a stopping daemon can wait for them."""

    def __init__(self):
        self._open = 0
        self._idle = threading.Condition()

    def opened(self) -> None:
        with self._idle:
            self._open += 1

    def closed(self) -> None:
        with self._idle:
            self._open -= 1
            if self._open == 0:
                self._idle.notify_all()

    @property
    def open(self) -> int:
        return self._open

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._open == 0, timeout)


class UploadFailed(OSError):
    """A write to the upload failed or came up short: the upload can no longer be published."""


class AtomicUpload:
    """A file being uploaded to `final_path`; `commit()` publishes it, `discard()` drops it.

    A write that fails or comes up short (a full disk, a quota, an I/O error) poisons the
    upload: every later write and the commit raise `UploadFailed` with the first error, and
    the temporary file is removed, so a file that lost bytes is never published.
    """

    def __init__(self, final_path: Path, transfers: TransferCounter, append: bool = False, guard=None):
        """`guard(upload, size)` is asked before the upload grows to `size` bytes, and raises an
        OSError to refuse it (a quota)."""
        self.final_path = final_path
        self.size = 0
        """The bytes the upload holds (its highest end written)."""
        self._guard = guard
        self.temp_path = final_path.parent / our_temp_name()
        self.started = time.monotonic()
        self.failure: OSError | None = None
        self._transfers = transfers
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.temp_path, flags, 0o640)
        self.finished = False
        transfers.opened()
        if append:
            try:
                self._copy_existing()
            except OSError:
                self.discard()
                raise

    def _copy_existing(self) -> None:
        """Start from the file's current content (resume, append): every byte, holes kept."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            source = os.open(self.final_path, flags)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(source).st_size
            self._grow(size)
            for start, end in _data_extents(source, size):
                _copy_range(source, self.fd, start, end)
            os.ftruncate(self.fd, size)
            if os.fstat(self.fd).st_size != size:
                raise UploadFailed(
                    errno.EIO, f"copied {os.fstat(self.fd).st_size} of {size} bytes", str(self.final_path)
                )
        finally:
            os.close(source)

    def write_at(self, offset: int, data: bytes) -> None:
        """Write all of `data` at `offset`, or poison the upload and raise."""
        if self.failure is not None:
            raise UploadFailed(self.failure.errno, self.failure.strerror, str(self.final_path))
        view = memoryview(data)
        try:
            self._grow(offset + len(view))
            while view:
                written = os.pwrite(self.fd, view, offset)
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
                offset += written
        except OSError as exc:
            self.failure = exc
            raise UploadFailed(exc.errno, exc.strerror, str(self.final_path)) from exc

    def _grow(self, end: int) -> None:
        if end > self.size:
            if self._guard is not None:
                self._guard(self, end)
            self.size = end

    def commit(self) -> int:
        """Flush and rename the finished upload to its real name; return its size.

        `fsync` first: a file system that reports a full disk or an I/O error only when the
        data is written back (NFS, quotas, delayed allocation) says so here, before the file
        appears under its real name.
        """
        if self.finished:
            raise RuntimeError(f"upload of {self.final_path} already finished")
        try:
            if self.failure is not None:
                raise UploadFailed(self.failure.errno, self.failure.strerror, str(self.final_path))
            os.fsync(self.fd)
            size = os.fstat(self.fd).st_size
            os.close(self.fd)
            self.fd = -1
            os.replace(self.temp_path, self.final_path)
        except OSError:
            self._close_fd()
            self._remove_temp()
            raise
        finally:
            self._finish()
        return size

    def discard(self) -> None:
        if self.finished:
            return
        self._close_fd()
        self._remove_temp()
        self._finish()

    def _close_fd(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def _remove_temp(self) -> None:
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._transfers.closed()

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started


def _data_extents(descriptor: int, size: int):
    """(start, end) of each stretch of data in a file, skipping holes (SEEK_DATA/SEEK_HOLE)."""
    position = 0
    while position < size:
        try:
            start = os.lseek(descriptor, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                return
            if exc.errno == errno.EINVAL:  # the file system cannot tell: all of it is data
                yield position, size
                return
            raise
        end = os.lseek(descriptor, start, os.SEEK_HOLE)
        yield start, min(end, size)
        position = end


def _copy_range(source: int, target: int, start: int, end: int) -> None:
    """Copy bytes [start, end) at the same offsets, looping: one call copies at most ~2 GiB."""
    position = start
    while position < end:
        try:
            copied = os.copy_file_range(source, target, end - position, position, position)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            copied = _copy_by_reading(source, target, position, min(end, position + (1 << 20)))
        if copied == 0:
            raise UploadFailed(errno.EIO, f"the file ended at byte {position} while copying", "")
        position += copied


def _copy_by_reading(source: int, target: int, start: int, end: int) -> int:
    data = os.pread(source, end - start, start)
    view = memoryview(data)
    position = start
    while view:
        written = os.pwrite(target, view, position)
        view = view[written:]
        position += written
    return len(data)
