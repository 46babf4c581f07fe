"""Reading partner CSV files: fingerprint and encoding first, then rows as a stream.

`inspect_file` reads the file once in blocks to take its sha256 and decide its encoding
(UTF-8 with or without BOM, else Windows-1252). `CsvRows` then yields one row at a time, so
memory does not grow with the file. Every value stays text; nothing is converted here.
"""

import codecs
import csv
import hashlib
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


class CsvRows:
    """The header and the data rows of one file; `row` numbers count the header as row 1."""

    def __init__(self, path: Path, facts: FileFacts, delimiter: str):
        self.path = path
        # cp1252 leaves five bytes undefined; they become U+FFFD rather than stopping the import.
        self._handle = open(path, encoding=facts.encoding, errors="replace" if facts.encoding == "cp1252" else "strict", newline="")
        self._reader = csv.reader(self._handle, delimiter=DELIMITERS[delimiter], strict=True)
        self.row = 0
        self.header = self._header()

    def _next(self):
        """The next record as (values, None), (None, problem) for a malformed one, or None at the end."""
        try:
            values = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            self.row += 1
            if "field larger than field limit" in str(exc):
                raise CsvStructureError(self.row, _explain(exc)) from None
            return None, _explain(exc)
        self.row += 1
        return values, None

    def _header(self) -> list[str]:
        record = self._next()
        if record is None:
            return []
        if record[1] is not None:
            raise CsvStructureError(1, f"the header cannot be read: {record[1]}")
        return [name.strip() for name in record[0]]

    def __iter__(self):
        """Yields (row, values, problem): values for a good record, a problem for a malformed one."""
        while (record := self._next()) is not None:
            values, problem = record
            if values != []:
                yield self.row, values, problem

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
