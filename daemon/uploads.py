"""Atomic uploads: written under a hidden temporary name, renamed only on a good close.

Both protocol servers write every upload through `AtomicUpload`, so a partner (and the
watcher) never sees half a file under its real name. The temporary name is short and fixed
in shape so that it fits any file-name limit and is easy to ignore.
"""

import os
import re
import secrets
import threading
import time
from pathlib import Path

TEMP_PREFIX = ".dropd-"
TEMP_SUFFIX = ".upload"
_OUR_TEMP = re.compile(r"^\.dropd-[0-9a-f]{16}\.upload$")
# Names that clients use while they upload, before renaming to the final name.
_CLIENT_TEMP = re.compile(r"(\.filepart|\.part|\.tmp|\.partial|\.crdownload|~)$", re.IGNORECASE)


def is_our_temp_name(name: str) -> bool:
    return bool(_OUR_TEMP.match(name))


def is_temporary_name(name: str) -> bool:
    """True for names that must never be treated as a finished file: ours and clients'."""
    return is_our_temp_name(name) or bool(_CLIENT_TEMP.search(name)) or name.startswith(".~")


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


class AtomicUpload:
    """A file being uploaded to `final_path`; `commit()` publishes it, `discard()` drops it."""

    def __init__(self, final_path: Path, transfers: TransferCounter, append: bool = False):
        self.final_path = final_path
        self.temp_path = final_path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
        self.started = time.monotonic()
        self._transfers = transfers
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.temp_path, flags, 0o640)
        if append:
            self._copy_existing()
        self.finished = False
        transfers.opened()

    def _copy_existing(self) -> None:
        try:
            with open(self.final_path, "rb") as existing:
                os.sendfile(self.fd, existing.fileno(), 0, os.fstat(existing.fileno()).st_size)
        except FileNotFoundError:
            pass

    def write_at(self, offset: int, data: bytes) -> None:
        os.pwrite(self.fd, data, offset)

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def commit(self) -> int:
        """Rename the finished upload to its real name; return its size."""
        if self.finished:
            raise RuntimeError(f"upload of {self.final_path} already finished")
        try:
            size = os.fstat(self.fd).st_size
            os.close(self.fd)
            os.replace(self.temp_path, self.final_path)
        except OSError:
            self._remove_temp()
            raise
        finally:
            self._finish()
        return size

    def discard(self) -> None:
        if self.finished:
            return
        try:
            os.close(self.fd)
        except OSError:
            pass
        self._remove_temp()
        self._finish()

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
