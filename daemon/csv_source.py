"""Reading partner CSV files: fingerprint and encoding first, then rows as a stream.

`inspect_file` reads the file once in blocks to take its sha256 and decide its encoding
(UTF-8 with or without BOM, else Windows-1252). `CsvRows` then yields one row at a time, so
memory does not grow with the file. Every value stays text; nothing is converted here.
"""

import codecs
import csv
import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1024 * 1024
# Large enough for any sane cell, small enough that an unclosed quote swallowing the rest of
# a big file is caught early instead of being held in memory.
FIELD_SIZE_LIMIT = 1024 * 1024
DELIMITERS = {"comma": ",", "tab": "\t"}

csv.field_size_limit(FIELD_SIZE_LIMIT)


class CsvStructureError(Exception):
    """The file cannot be read as CSV past `row` (no header, or a runaway quote); nothing applies."""

    def __init__(self, row: int, message: str):
        self.row = row
        super().__init__(f"row {row}: {message}")


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size: int
    encoding: str
    """"utf-8-sig" (UTF-8, BOM or not) or "cp1252" (not valid UTF-8)."""

    @property
    def encoding_note(self) -> str | None:
        if self.encoding == "cp1252":
            return "encoding: the file is not valid UTF-8; it was read as Windows-1252"
        return None


def inspect_file(path: Path) -> FileFacts:
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    valid_utf8 = True
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
            if valid_utf8:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    valid_utf8 = False
    if valid_utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            valid_utf8 = False
    return FileFacts(digest.hexdigest(), size, "utf-8-sig" if valid_utf8 else "cp1252")


class _Tap:
    """Passes lines from a file to the csv module and keeps the ones it took."""

    def __init__(self, lines):
        self._lines = lines
        self.taken: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line


class CsvRows:
    """The header and the data records of one file; `row` numbers count the header as row 1.

    Each record comes with its raw text (without the final line end), so a caller can
    recognise a record it has seen before without parsing it. A line with no quote (and no
    NUL) is one record and is split on the delimiter, which is exactly what the csv module
    makes of it; any other line starts a record that the csv module reads, over as many
    lines as its quoting needs.
    """

    def __init__(self, path: Path, facts: FileFacts, delimiter: str):
        self.path = path
        # cp1252 leaves five bytes undefined; they become U+FFFD rather than stopping the import.
        errors = "replace" if facts.encoding == "cp1252" else "strict"
        self._handle = open(path, encoding=facts.encoding, errors=errors, newline="")
        self._lines = iter(self._handle)
        self.delimiter = DELIMITERS[delimiter]
        self.row = 0
        self.header = self._header()

    def _next(self):
        """The next record as (text, values, problem), or None at the end of the file."""
        try:
            line = next(self._lines)
        except StopIteration:
            return None
        self.row += 1
        if '"' not in line and "\x00" not in line:
            text = line.rstrip("\r\n")
            return text, (text.split(self.delimiter) if text else []), None
        tap = _Tap(self._lines)
        reader = csv.reader(itertools.chain([line], tap), delimiter=self.delimiter, strict=True)
        try:
            values = next(reader, [])
            problem = None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise CsvStructureError(self.row, _explain(exc)) from None
            values, problem = None, _explain(exc)
        return (line + "".join(tap.taken)).rstrip("\r\n"), values, problem

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
            if values != []:
                yield self.row, text, values, problem

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _explain(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a cell is longer than {FIELD_SIZE_LIMIT} characters; most likely a quote is never closed"
    if "NUL" in text:
        return "the file contains NUL bytes; it is not a text CSV file"
    if "unexpected end of data" in text:
        return "the file ends inside a quoted cell; a quote is never closed"
    return text
