"""One daemon per state directory: an exclusive lock taken before anything is touched.

A second `dropd run` on the same config would otherwise replace the control socket and mark
the first one's runs interrupted before failing to listen. The lock is `flock` on
`<state_dir>/dropd.lock`, held for the life of the process (the kernel drops it when the
process dies, however it dies); the file holds the holder's pid for the message.
"""

import fcntl
import os
from pathlib import Path

LOCK_NAME = "dropd.lock"


class AlreadyRunning(RuntimeError):
    pass


class InstanceLock:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / LOCK_NAME
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning naming the pid that holds it."""
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise AlreadyRunning(
                f"dropd is already running (pid {holder}) with state_dir {self.path.parent}; "
                "stop it first, or give this one its own state_dir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
