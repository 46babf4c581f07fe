"""Per-partner quotas: the bytes in a partner's home, against `[partner] quota`.

An upload that would take the home past its quota fails at the write that would (SFTP: a
failure status "quota exceeded"; FTP: 552), and as any failed upload it publishes nothing and
leaves nothing. Everything in the home counts: the partner's uploads, archive and failed/
folders, and the files dropd writes there (exports), which are never refused (they are
ours) but are counted. What the home holds is read from disk at most every RESCAN seconds;
uploads open now count with what they have written, and a finished one is added at once, so
a burst of uploads cannot slip past between two looks.
"""

import errno
import os
import threading
import time
from pathlib import Path

from daemon.temp_names import is_our_temp_name

RESCAN = 10.0
WARN_AT = 0.9
"""The share of a quota at which admin is told (an alert, once)."""


class QuotaExceeded(OSError):
    def __init__(self, partner: str, quota: int):
        super().__init__(errno.EDQUOT, f"quota exceeded: {partner}'s folder may hold {format_bytes(quota)}")


class Quotas:
    def __init__(self, drop_root: Path, clock=time.monotonic):
        self.drop_root = drop_root
        self._clock = clock
        self._lock = threading.Lock()
        self._on_disk: dict[str, tuple[float, int]] = {}
        """Per partner: when the home was last read, and the bytes it held then (uploads in
        progress left out) plus the uploads finished since."""
        self._writing: dict[str, dict[object, int]] = {}
        """Per partner: each open upload and the bytes it holds now."""

    def used(self, partner: str) -> int:
        """The bytes in the partner's home now, uploads in progress included."""
        with self._lock:
            writing = sum(self._writing.get(partner, {}).values())
        return self._on_disk_now(partner) + writing

    def check(self, partner, upload, size: int) -> None:
        """Raise QuotaExceeded if `upload` holding `size` bytes would pass the partner's quota."""
        with self._lock:
            uploads = self._writing.setdefault(partner.name, {})
            others = sum(held for other, held in uploads.items() if other is not upload)
        if partner.quota is not None and self._on_disk_now(partner.name) + others + size > partner.quota:
            raise QuotaExceeded(partner.name, partner.quota)
        with self._lock:
            uploads[upload] = size

    def finished(self, partner: str, upload, published: bool) -> None:
        """The upload is over: published (its bytes are on disk now) or dropped."""
        with self._lock:
            size = self._writing.get(partner, {}).pop(upload, 0)
            if published and partner in self._on_disk:
                when, held = self._on_disk[partner]
                self._on_disk[partner] = (when, held + size)

    def _on_disk_now(self, partner: str) -> int:
        with self._lock:
            seen = self._on_disk.get(partner)
        if seen is not None and self._clock() - seen[0] < RESCAN:
            return seen[1]
        held = home_size(self.drop_root / partner)
        with self._lock:
            self._on_disk[partner] = (self._clock(), held)
        return held


def home_size(home: Path) -> int:
    """The bytes of every file under `home` but our uploads in progress."""
    total = 0
    for folder, _, files in os.walk(home):
        for name in files:
            if is_our_temp_name(name):
                continue
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def format_bytes(size: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
