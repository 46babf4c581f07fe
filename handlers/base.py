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


def reject_missing_columns(missing: list[str]) -> None:
    """One FileRejected naming every missing required column (each written as it should
    appear, e.g. "'Cell' (mobile_number)"), so a partner fixes the header in one go."""
    if len(missing) == 1:
        raise FileRejected("missing-column", f"required column {missing[0]} is not in the header")
    if missing:
        raise FileRejected("missing-column", f"required columns {', '.join(missing)} are not in the header")


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


def column_mapping(value, fields: tuple, required: tuple) -> dict:
    """A feed's `[feed.columns]` table: field = "column header", checked against `fields`."""
    if not isinstance(value, dict):
        raise ValueError('must be a table of field = "column header"')
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; fields are: {', '.join(fields)}")
    missing = [name for name in required if name not in value]
    if missing:
        raise ValueError(f"required field(s) not mapped: {', '.join(missing)}")
    for name, header in value.items():
        if not isinstance(header, str) or not header.strip():
            raise ValueError(f"{name} must name a column header")
    return {name: header.strip() for name, header in value.items()}


def well_formed(rows, errors: "RowErrors", counts: ImportCounts):
    """The file's records as (row, text, values), counted; malformed ones are rejected here."""
    width = len(rows.header)
    for row, text, values, problem in rows:
        counts.rows += 1
        if problem is None and len(values) != width:
            problem = f"the row has {len(values)} cells but the header has {width}"
        if problem is not None:
            errors.reject(row, "malformed-row", problem, values or [])
            counts.rejected += 1
            continue
        yield row, text, values


class RowErrors:
    """Where handlers report row problems; the run decides where they are written.

    Rows come in file order, so remembering the last row with a partial error is enough to
    tell whether an applied row counts as `partial`.
    """

    def __init__(self, write):
        self._write = write
        self._last_partial_row = None

    def reject(self, row: int, code: str, message: str, values) -> None:
        self._write(row, code, COMPLETE, message, values)

    def partial(self, row: int, code: str, message: str, values) -> None:
        self._last_partial_row = row
        self._write(row, code, PARTIAL, message, values)

    def had_partial(self, row: int) -> bool:
        """True when `row` got a partial error (a field dropped, the row still applied)."""
        return self._last_partial_row == row
