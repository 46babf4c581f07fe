"""The contract of a feed kind, and what every import kind shares.

An import kind is a class derived from `ImportKind`, listed once in `handlers/__init__.py`.
The run (`daemon/feeds/runs.py`) opens the file, starts a transaction and calls the kind's
hooks in this order; everything else — the header, malformed rows, counting, `UNSET`,
partial rows, the error file — is done here, the same way for every kind.

`read_options(reader)` (static)
    Reads the kind's own keys from the feed's table, at config load. `reader.take(key,
    parse, default)`, `reader.sub(key)` and `reader.entries(key)` read values with the
    parsers of `handlers/option_values.py`; `reader.error(key, message)` reports a problem
    (the reader adds file and key). Returns the options object the kind is built with.

`__init__(feed)`
    `feed` is a `FeedSetup`: partner and feed names, the options, the daemon's time zone.

`columns() -> list[Column]`
    The columns the kind reads: what it calls each one, its header in the file, whether the
    file must have it. The base locates them in the header: a required one missing fails the
    file (`missing-column`, naming every missing one), a wanted one twice fails it
    (`duplicate-column`). `row.cell(key)` then reads a row's cell by the kind's name for it.

`begin(tx, header)`
    Called once, inside the transaction, before the first row. Optional.

Rows come in batches of up to `BATCH` records, so a kind can look up and write what a
batch needs in a few statements instead of a few per row; the outcome is exactly that of
applying the rows one by one in file order.

`recognise(texts) -> list | None`
    Called with the raw text of each well-formed record of a batch, before anything else: a
    token for each record the kind knows to be as its last import left it (a re-import), a
    false value (0, None) for the others; None for none. A recognised record is neither split into cells nor
    prepared. Optional.

`still_known(tokens) -> bool`
    Called in file order with recognised records' tokens: True counts them all unchanged;
    False (an earlier row of the file rewrote what one describes) makes the base ask again
    record by record, and apply as a row, without `prepare`, each one the answer is False for.
    A batch made only of recognised records is asked about at once. Optional (always True).

`prepare(tx, rows)`
    Called with each batch's other well-formed rows, in file order, before any of them is
    applied: the place for bulk lookups and for work that needs no store; `row.memo` holds
    whatever the kind worked out for `apply`. Optional.

`apply(tx, row) -> str`
    Applies one well-formed row, in file order, through the store's repositories
    (`tx.contacts`, ...), or queues its write for `flush`. It must see the effect of the rows
    before it, including those of its own batch. Returns `CREATED`, `UPDATED` or `UNCHANGED`
    (the row counts as applied), or the name of another counter (e.g. "too_old": counted,
    neither applied nor rejected). `row.reject(code, message)` rejects the row (it raises);
    `row.partial(code, message)` reports a field that was dropped while the row is applied
    (counted as `partial`).

`flush(tx)`
    Called after each batch's last row: writes what `apply` queued. Optional.

`finish(tx, counts)`
    Called once after the last row, inside the transaction: whole-file work (a full
    replacement's removals). Raising `FileRejected` voids the whole file. Optional.

An export kind is a class derived from `ExportKind`. The export run
(`daemon/exports/runs.py`) opens a read snapshot of the store and calls:

`read_options(reader)` (static), `__init__(feed)`
    As for import kinds.

`header(tx) -> list[str]`
    The file's columns, in order, read in the export's snapshot (a kind may add columns the
    store knows of, such as a partner's custom fields).

`settle(tx)`
    Called in a short transaction of its own just before the snapshot: a watermarked kind
    waits there for writes in flight that would take positions below the ones it reads.
    Optional.

`upto(tx) -> int | None`
    The store position this export reaches, read in the snapshot first; rows stored after
    it (while the export runs) go out next time. None for a snapshot kind.

`delivered(tx, after, upto) -> dict`
    Called in the transaction that records a delivered export (with the watermark): what
    the kind keeps of it (rows held back for later), and counts for the run. Optional.

`rows(tx, after, upto) -> Iterable[list]`
    The rows to export, streamed (memory must not grow with the export). `after` is the
    feed's watermark: the position of the last row a *delivered* export of this feed held
    (0 before the first). A kind with `watermarked = True` returns the rows after it up to
    `upto`, and the run moves the watermark to `upto` when the file is delivered, in the
    transaction that records the run; a snapshot kind ignores both.

No rows is a `skipped` run and no file. Cells are made safe for spreadsheets by the run.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

COMPLETE = "complete"
PARTIAL = "partial"

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"

UNSET = "UNSET"
"""A cell holding exactly this clears the field; an empty cell leaves it unchanged."""

KEEP = object()
"""What `Row.change` returns for an empty cell (or a column the file does not have)."""


class Batch(Protocol):
    """Records read together, in file order (`daemon.feeds.csv_source.RecordBatch`)."""

    texts: list[str]
    """Each record's raw text, without its line end."""
    odd: dict[int, tuple[Any, Any]]
    """By index, (cells, problem) of the records that are not plain lines."""

    def __len__(self) -> int: ...

    def record(self, index: int) -> tuple[int, str, list[str] | None, str | None]:
        """(row number, text, cells or None: split the text, problem or None)."""
        ...

    def unusable(self) -> list[int]: ...


class Records(Protocol):
    """A file's records, as `ImportKind.run` reads them (`daemon.feeds.csv_source.CsvRows`)."""

    header: list[str]
    delimiter: str

    def batches(self, size: int, max_chars: int) -> Iterator[Batch]: ...


class OptionReader(Protocol):
    """How a kind reads its options (`daemon.config.values.TableReader`): each `take` parses a
    key with a parser of `option_values`, or records the problem and gives None."""

    table: dict[str, Any]
    """The table as written (a mapping read whole, like `[feed.columns]`)."""

    def take(self, key: str, parse: Callable[[Any], Any], default: Any = ...) -> Any: ...

    def sub(self, key: str, required: bool = False) -> "OptionReader | None": ...

    def entries(self, key: str) -> list["OptionReader"]: ...

    def has(self, key: str) -> bool: ...

    def error(self, key: str, message: str) -> None: ...

    def finish(self) -> None: ...


class Problem(Exception):
    """A problem with an error code from the error dictionary and a sentence for a person."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class FileRejected(Problem):
    """The whole file is refused (e.g. a required column is missing); nothing is applied."""


class RowRejected(Problem):
    """Raised by `Row.reject`: the row is not applied; the base records why."""


@dataclass(frozen=True)
class FeedSetup:
    partner: str
    feed: str
    options: Any
    """What the kind's `read_options` returned."""
    timezone: str = "UTC"
    """The daemon's time zone: what a date without one in a file means."""


@dataclass(frozen=True)
class Column:
    key: str
    """What the kind calls the column (a field name)."""
    header: str
    """The column's header in the file."""
    required: bool = False
    label: str | None = None
    """How an error names it beside its header; the key when not given."""

    def described(self) -> str:
        label = self.label or self.key
        return repr(self.header) if label == self.header else f"{self.header!r} ({label})"


@dataclass
class ImportCounts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    partial: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def applied(self) -> int:
        return self.created + self.updated + self.unchanged

    def details(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "partial": self.partial,
            **self.extra,
        }

    def count(self, outcome: str) -> None:
        if outcome in (CREATED, UPDATED, UNCHANGED):
            setattr(self, outcome, getattr(self, outcome) + 1)
        else:
            self.extra[outcome] = self.extra.get(outcome, 0) + 1


class RowErrors:
    """Where rows' problems go: `write(row, code, failure_type, message, values)`, given by
    the run (the error file and the store)."""

    def __init__(self, write: Callable[[int, str, str, str, Sequence[str]], None]):
        self.write = write


class Row:
    """One well-formed data row, as the kind sees it."""

    __slots__ = ("number", "text", "values", "_layout", "_errors", "partial_codes", "memo")

    def __init__(self, number: int, text: str, values: list[str], layout: "Layout", errors: RowErrors):
        self.number = number
        self.text = text
        """The record's raw text, as in the file."""
        self.values = values
        self._layout = layout
        self._errors = errors
        self.partial_codes: list[str] = []
        self.memo: Any = None
        """What the kind's `prepare` worked out for this row (None when it was not prepared)."""

    def has(self, key: str) -> bool:
        """True when the file has the column."""
        return self._layout.positions.get(key) is not None

    def cell(self, key: str) -> str | None:
        """The cell of column `key`, stripped; None when the file has no such column."""
        index = self._layout.positions.get(key)
        return self.values[index].strip() if index is not None else None

    def cells(self) -> dict[str, str]:
        """Every column the file has, by the kind's name for it, stripped: `cell` for all at once."""
        values = self.values
        return {key: values[index].strip() for key, index in self._layout.present}

    def change(self, key: str) -> Any:
        """What the cell asks for: `KEEP` (empty, or no column), None (`UNSET`: clear it), or the value."""
        return change_of(self.cell(key))

    def reject(self, code: str, message: str) -> NoReturn:
        raise RowRejected(code, message)

    def partial(self, code: str, message: str) -> None:
        self.partial_codes.append(code)
        self._errors.write(self.number, code, PARTIAL, message, self.values)


def change_of(cell: str | None) -> Any:
    """What a cell asks for: `KEEP` (empty, or None for no column), None (`UNSET`), or the value."""
    if not cell:
        return KEEP
    return None if cell == UNSET else cell


@dataclass(frozen=True)
class Layout:
    """Where a file's header put the kind's columns."""

    positions: dict[str, int | None]
    """Each column's position (None: the file does not have it)."""
    present: list[tuple[str, int]]
    """(column, position) of the columns the file has."""
    width: int
    """Cells in the header: what every record must have."""


def column_mapping(value: object, fields: tuple[str, ...], required: tuple[str, ...]) -> dict[str, str]:
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


def locate(header: list[str], columns: list[Column]) -> dict[str, int | None]:
    """Each column's position in `header` (None when absent and not required).

    A required column that is missing fails the file, naming every missing one so a partner
    fixes the header in one go; a column the kind reads that appears twice fails it too.
    """
    positions: dict[str, int] = {}
    wanted = {column.header for column in columns}
    for index, name in enumerate(header):
        if name in positions:
            if name in wanted:
                raise FileRejected("duplicate-column", f"column {name!r} appears twice in the header")
            continue
        positions[name] = index
    missing = [column.described() for column in columns if column.required and column.header not in positions]
    if len(missing) == 1:
        raise FileRejected("missing-column", f"required column {missing[0]} is not in the header")
    if missing:
        raise FileRejected("missing-column", f"required columns {', '.join(missing)} are not in the header")
    return {column.key: positions.get(column.header) for column in columns}


class _Kind(ABC):
    """What both directions share: the feed a kind works for."""

    kind: str
    """The name feeds use in `kind = "..."`."""

    def __init__(self, feed: FeedSetup):
        self.partner = feed.partner
        self.feed = feed.feed
        self.options = feed.options
        self.timezone = feed.timezone

    @staticmethod
    @abstractmethod
    def read_options(reader: OptionReader) -> object: ...


class ImportKind(_Kind):
    direction = "import"

    @abstractmethod
    def columns(self) -> list[Column]: ...

    def begin(self, tx: "Transaction", header: list[str]) -> None:
        """Before the first row."""

    def prepare(self, tx: "Transaction", rows: list[Row]) -> None:
        """Before a batch's rows are applied."""

    @abstractmethod
    def apply(self, tx: "Transaction", row: Row) -> str: ...

    def flush(self, tx: "Transaction") -> None:
        """After a batch's last row."""

    def finish(self, tx: "Transaction", counts: ImportCounts) -> None:
        """After the last row."""

    def take_batch(
        self, tx: "Transaction", batch: Batch, layout: "Layout", delimiter: str, counts: ImportCounts
    ) -> bool:
        """Apply a whole `RecordBatch` at once and count it (True), or leave it to `prepare` and
        `apply`, row by row (False)."""
        return False

    def recognise(self, texts: list[str]) -> list[Any] | None:
        """For each text, a token (true) when its record is known to be as the last import left
        it, else a false value; or None when no record can be known."""
        return None

    def still_known(self, tokens: list[Any]) -> bool:
        return True

    def returned_batch(self, tx: "Transaction", counts: ImportCounts) -> Batch | None:
        """The batch `take_batch` took last, when the store turned it down after all (its counts
        taken back): it goes row by row. None: nothing came back. Asked before the next batch
        goes row by row and after the last; `take_batch` asks it itself before writing."""
        return None

    def run(self, tx: "Transaction", rows: Records, errors: RowErrors) -> ImportCounts:
        """Apply every record of `rows` (a `CsvRows`) inside `tx`; the hooks do the kind's part."""
        positions = locate(rows.header, self.columns())
        layout = Layout(positions, [(k, p) for k, p in positions.items() if p is not None], len(rows.header))
        self.begin(tx, rows.header)
        counts = ImportCounts()
        for batch in rows.batches(BATCH, BATCH_CHARS):
            # Records are sorted out first (recognised, or to apply or report); the rows to apply
            # are prepared as one batch; then every record is counted, reported or applied in file
            # order, a run of recognised records at once. A batch with none recognised may be
            # taken whole; one taken before and turned down goes row by row before the next.
            tokens = self.recognise(batch.texts)
            if not any(tokens or ()) and self.take_batch(tx, batch, layout, rows.delimiter, counts):
                self.flush(tx)
                continue
            self._rows_of_returned(tx, rows.delimiter, layout, errors, counts)
            self._rows(tx, batch, tokens, rows.delimiter, layout, errors, counts)
        self._rows_of_returned(tx, rows.delimiter, layout, errors, counts)
        self.finish(tx, counts)
        return counts

    def _rows_of_returned(
        self, tx: "Transaction", delimiter: str, layout: Layout, errors: RowErrors, counts: ImportCounts
    ) -> None:
        returned = self.returned_batch(tx, counts)
        if returned is not None:
            self._rows(tx, returned, None, delimiter, layout, errors, counts)

    def _rows(
        self, tx: "Transaction", batch: Batch, tokens: list[Any] | None, delimiter: str, layout: Layout,
        errors: RowErrors, counts: ImportCounts,
    ) -> None:  # fmt: skip
        """A batch row by row (`tokens`: what `recognise` said of its records)."""
        if tokens:
            for index in batch.unusable():
                tokens[index] = None  # reported whatever its text
            if all(tokens) and self.still_known(tokens):
                counts.rows += len(batch)  # every record as the last import left it
                counts.unchanged += len(batch)
                return
            taken: Iterable[int] = [index for index, token in enumerate(tokens) if not token]
        else:
            taken = range(len(batch))
        entries = [(index, _row_or_problem(batch.record(index), delimiter, layout, errors)) for index in taken]
        self.prepare(tx, [entry for _, entry in entries if isinstance(entry, Row)])
        settled = 0  # records before this one are counted, reported or applied
        for index, entry in entries:
            if index > settled:
                self._settle(tx, batch, tokens, settled, index, delimiter, layout, errors, counts)
            self._take(tx, entry, errors, counts)
            settled = index + 1
        if settled < len(batch):
            self._settle(tx, batch, tokens, settled, len(batch), delimiter, layout, errors, counts)
        self.flush(tx)

    def _settle(
        self, tx: "Transaction", batch: Batch, tokens: list[Any] | None, start: int, end: int, delimiter: str,
        layout: Layout, errors: RowErrors, counts: ImportCounts,
    ) -> None:  # fmt: skip
        """Recognised records `start` to `end` of `batch` (no row applied between them): all
        unchanged when the kind says so at once, else asked about one by one and applied where
        rewritten."""
        assert tokens is not None, "records are settled only where some were recognised"
        if self.still_known(tokens[start:end]):
            counts.rows += end - start
            counts.unchanged += end - start
            return
        for index in range(start, end):
            if self.still_known([tokens[index]]):
                counts.rows += 1
                counts.unchanged += 1
            else:
                self._take(tx, _row_or_problem(batch.record(index), delimiter, layout, errors), errors, counts)

    def _take(self, tx: "Transaction", entry: "Row | Malformed", errors: RowErrors, counts: ImportCounts) -> None:
        """A row to apply, or (row number, cells, problem) to report."""
        counts.rows += 1
        if isinstance(entry, Row):
            self._apply(tx, entry, counts)
        else:
            number, values, problem = entry
            errors.write(number, "malformed-row", COMPLETE, problem, values or [])
            counts.rejected += 1

    def _apply(self, tx: "Transaction", row: Row, counts: ImportCounts) -> None:
        try:
            outcome = self.apply(tx, row)
        except RowRejected as rejected:
            row._errors.write(row.number, rejected.code, COMPLETE, rejected.message, row.values)
            counts.rejected += 1
            return
        counts.count(outcome)
        if row.partial_codes and outcome in (CREATED, UPDATED, UNCHANGED):
            counts.partial += 1


Malformed = tuple[int, list[str] | None, str]
"""(row number, cells if they could be read, what is wrong): a record that is not a `Row`."""


def _row_or_problem(
    record: tuple[int, str, list[str] | None, str | None], delimiter: str, layout: Layout, errors: RowErrors
) -> Row | Malformed:
    """A record as a `Row`, or (row number, cells, problem) when it cannot be one."""
    number, text, values, problem = record
    if problem is None:
        if values is None:
            values = text.split(delimiter)
        if len(values) == layout.width:
            return Row(number, text, values, layout, errors)
        problem = f"the row has {len(values)} cells but the header has {layout.width}"
    return number, values, problem


BATCH = 2000
"""Records per batch: large enough that a lookup per batch costs little per row, small enough
that a batch's rows stay a few MiB whatever the file's size."""
BATCH_CHARS = 4 * 1024 * 1024
"""Characters per batch: records of up to 4 Mi characters each would make 2,000 of them 8 GiB;
this keeps a batch's memory flat in the size of its records (a record that long is a batch
alone). A batch of 2,000 typical records of a few hundred characters stays well below it."""


class ExportKind(_Kind):
    direction = "export"
    watermarked = False
    """True: each export holds the rows since the last delivered one; False: a full snapshot."""

    @abstractmethod
    def header(self, tx: "Transaction") -> list[str]: ...

    def settle(self, tx: "Transaction") -> None:
        """Before the snapshot."""

    def upto(self, tx: "Transaction") -> int | None:
        return None

    @abstractmethod
    def rows(self, tx: "Transaction", after: int, upto: int | None) -> Iterable[list[Any]]: ...

    def delivered(self, tx: "Transaction", after: int, upto: int | None) -> dict[str, int]:
        """In the transaction that records a delivered export: the kind's own bookkeeping.
        Returns counts for the run's details; `unknown_contact` makes the run say how many
        rows wait for their contact."""
        return {}
