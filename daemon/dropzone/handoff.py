"""The one place where a finished upload enters the core.

Both protocol servers call `UploadHandoff.finished` once a file is complete under its final
name, and only then. Whatever acts on arrivals (feeds, watchers) subscribes here.
"""

from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.handoff import Handoff

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


class UploadHandoff(Handoff[FinishedUpload]):
    def __init__(self):
        super().__init__("upload")

    def finished(self, upload: FinishedUpload) -> None:
        log.info(
            "upload.completed",
            partner=upload.partner,
            protocol=upload.protocol,
            path=upload.path,
            size=upload.size,
            duration=round(upload.duration, 3),
        )
        self.publish(upload, partner=upload.partner, path=upload.path)
