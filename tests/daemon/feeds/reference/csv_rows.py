"""`CsvRows` as it was at commit c4d84a7: a line at a time through the text stream's
`readline`. tests/daemon/feeds/test_csv_source.py checks that the block reader that replaced it
yields the same records and fails the same files with the same errors."""

import csv
import itertools

from daemon.feeds.csv_source import (
    DELIMITERS,
    RECORD_LIMIT,
    CsvStructureError,
    FileFacts,
    LandedFile,
    _cell_problem,
    _explain,
    _Tap,
)


class LineByLineCsvRows:
    """The header and the data records of one file; `row` numbers count the header as row 1.

    Each record comes with its raw text (without the final line end), so a caller can
    recognise a record it has seen before without parsing it. A line with no quote (and no
    NUL) is one record and is split on the delimiter, which is exactly what the csv module
    makes of it; any other line starts a record that the csv module reads, over as many
    lines as its quoting needs.
    """

    def __init__(self, landed: LandedFile, facts: FileFacts, delimiter: str):
        # cp1252 leaves five bytes undefined; they become U+FFFD rather than stopping the import.
        errors = "replace" if facts.encoding == "cp1252" else "strict"
        self._handle = landed.text(facts.encoding, errors)
        self.delimiter = DELIMITERS[delimiter]
        self.row = 0
        try:
            self.header = self._header()
        except BaseException:
            self._handle.close()  # the caller's `with` never began
            raise

    def _read_line(self) -> str:
        """The next physical line, "" at the end; a line longer than RECORD_LIMIT fails the file."""
        line = self._handle.readline(RECORD_LIMIT + 1)
        if len(line) > RECORD_LIMIT:
            raise CsvStructureError(
                self.row + 1,
                f"a line is longer than {RECORD_LIMIT:,} characters; this is not a CSV file a person wrote",
            )
        return line

    def _next(self):
        """The next record as (text, values, problem), or None at the end of the file."""
        line = self._read_line()
        if not line:
            return None
        self.row += 1
        if '"' not in line:
            text = line.rstrip("\r\n")
            values = text.split(self.delimiter) if text else []
            return text, values, _cell_problem(text, values)
        tap = _Tap(self._read_line, self.row, line)
        reader = csv.reader(itertools.chain([line], tap), delimiter=self.delimiter, strict=True)
        try:
            values = next(reader, [])
            problem = None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise CsvStructureError(self.row, _explain(exc)) from None
            values, problem = None, _explain(exc)
        text = (line + "".join(tap.taken)).rstrip("\r\n")
        return text, values, problem or _cell_problem(text, values or [])

    def _header(self) -> list[str]:
        record = self._next()
        if record is None:
            return []
        _, values, problem = record
        if problem is not None:
            raise CsvStructureError(1, f"the header cannot be read: {problem}")
        return [name.strip() for name in values]

    def __iter__(self):
        """Yields (row, text, values, problem): values for a good record, a problem for a bad one."""
        while (record := self._next()) is not None:
            text, values, problem = record
            if values is None or values:  # a blank line is no record
                yield self.row, text, values, problem

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
