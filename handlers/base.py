"""What every import handler shares: the rejection of a whole file, per-row error reports, counts.

A handler class has `kind`, `read_options(reader)` (its feed keys, checked at config load),
and is built as `Handler(partner, feed, options, timezone)`; `run(store, connection, rows,
errors)` applies a file inside the caller's transaction and returns its counts.
"""

from dataclasses import dataclass, field

COMPLETE = "complete"
PARTIAL = "partial"


class FileRejected(Exception):
    """The whole file is refused (e.g. a required column is missing); nothing is applied."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass
class ImportCounts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    partial: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def applied(self) -> int:
        return self.created + self.updated + self.unchanged

    def details(self) -> dict:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "partial": self.partial,
            **self.extra,
        }


class RowErrors:
    """Where handlers report row problems; the run decides where they are written."""

    def __init__(self, write):
        self._write = write

    def reject(self, row: int, code: str, message: str, values) -> None:
        self._write(row, code, COMPLETE, message, values)

    def partial(self, row: int, code: str, message: str, values) -> None:
        self._write(row, code, PARTIAL, message, values)
