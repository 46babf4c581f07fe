"""The one place where a finished upload enters the core.

Both protocol servers call `UploadHandoff.finished` once a file is complete under its final
name, and only then. Whatever acts on arrivals (feeds, watchers) subscribes here; a failing
subscriber is logged and never disturbs the transfer or the other subscribers.
"""

import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("dropd.handoff")


@dataclass(frozen=True)
class FinishedUpload:
    partner: str
    protocol: str
    path: str
    """The path as the partner sees it, from the home folder ("/imports/a.csv")."""
    real_path: Path
    size: int
    duration: float


class UploadHandoff:
    def __init__(self):
        self._subscribers = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def finished(self, upload: FinishedUpload) -> None:
        log.info(
            "upload.completed",
            partner=upload.partner,
            protocol=upload.protocol,
            path=upload.path,
            size=upload.size,
            duration=round(upload.duration, 3),
        )
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(upload)
            except Exception:
                log.exception("upload.subscriber_failed", partner=upload.partner, path=upload.path)
