"""Reading partner CSV files: fingerprint and encoding first, then rows as a stream.

`LandedFile` opens the file once, without following a symbolic link, and everything after
that reads the same descriptor: a file swapped for a link to something else between the
checks and the read is never read, and the file archived afterwards is the one read
(`still_in_place`). `inspect_file` reads it in blocks to take its sha256 and decide its
encoding (UTF-8 with or without BOM, else Windows-1252). `CsvRows` then yields one row at a
time, so memory does not grow with the file: every physical line, every record and every
cell is capped, whatever the quoting. Every value stays text; nothing is converted here.
"""

import codecs
import csv
import errno
import hashlib
import itertools
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1024 * 1024
# Large enough for any sane cell, small enough that an unclosed quote swallowing the rest of
# a big file is caught early instead of being held in memory.
FIELD_SIZE_LIMIT = 1024 * 1024
# A whole record (25 custom fields of 1,000 characters fit many times over); a line or a
# quoted record longer than this fails the file rather than being held in memory.
RECORD_LIMIT = 4 * 1024 * 1024
DELIMITERS = {"comma": ",", "tab": "\t"}

csv.field_size_limit(FIELD_SIZE_LIMIT)


class UnsafeFile(Exception):
    """The landed name is not a regular file (a symbolic link, a FIFO, a folder)."""


class LandedFile:
    """One landed file, opened once; its identity is that of the open descriptor."""

    def __init__(self, path: Path):
        self.path = path
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            self.fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFile(f"{path.name} is a symbolic link; only regular files are imported") from None
            raise
        info = os.fstat(self.fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(self.fd)
            raise UnsafeFile(f"{path.name} is not a regular file")
        self.identity = (info.st_dev, info.st_ino)

    @property
    def name(self) -> str:
        """The name the file is imported under (a decrypted file's inner name)."""
        return self.path.name

    def still_in_place(self) -> bool:
        """True when the name still leads to the file that was read."""
        try:
            info = os.lstat(self.path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.identity

    def text(self, encoding: str, errors: str):
        """A text stream over the same file from its start (its own descriptor)."""
        handle = open(os.dup(self.fd), encoding=encoding, errors=errors, newline="")  # noqa: SIM115 (the caller closes it)
        handle.seek(0)
        return handle

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DecryptedFile(LandedFile):
    """The plaintext of an encrypted landed file: read from its own (unnamed) descriptor,
    imported under the inner name, while the landed file's name and identity stay those of
    what the partner uploaded (it is that file that is archived or set aside)."""

    def __init__(self, landed: LandedFile, plaintext_fd: int, inner_name: str):
        self.path = landed.path
        self.identity = landed.identity
        self.uploaded_fd = landed.fd
        """The file as uploaded (its checksum companion is of these bytes)."""
        self.fd = plaintext_fd
        self._inner_name = inner_name

    @property
    def name(self) -> str:
        return self._inner_name


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


def inspect_file(landed: LandedFile) -> FileFacts:
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    valid_utf8 = True
    size = 0
    while block := os.pread(landed.fd, BLOCK, size):
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
    """Passes lines to the csv module and keeps the ones it took, up to RECORD_LIMIT in all."""

    def __init__(self, read_line, row: int, first: str):
        self._read_line = read_line
        self._row = row
        self._length = len(first)
        self.taken: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._read_line()
        if not line:
            raise StopIteration
        self._length += len(line)
        if self._length > RECORD_LIMIT:
            raise CsvStructureError(
                self._row, f"a quoted record runs past {RECORD_LIMIT:,} characters; most likely a quote is never closed"
            )
        self.taken.append(line)
        return line


# A physical line with its end (\n, \r\n or \r, as a text stream with newline="" splits them),
# and the same without its end.
_RAW_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")
_LINE_TEXT = re.compile(r"([^\r\n]*)(?:\r\n|\r|\n)")


class RecordBatch:
    """Records read together, in file order: record `i` is row `numbers[i]`, whose raw text
    (without its line end) is `texts[i]`. Most records are plain lines, whose cells are their
    text split on the delimiter; `odd` holds, by index, (values, problem) for the others: a
    record the csv module read (its cells), or one that cannot be used (what is wrong)."""

    __slots__ = ("numbers", "texts", "odd", "chars")

    def __init__(self, numbers: list[int], texts: list[str], odd: dict[int, tuple]):
        self.numbers = numbers
        self.texts = texts
        self.odd = odd
        self.chars = sum(map(len, texts))
        """The characters of all the texts: what bounds a batch besides its number of records."""

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, number: int, text: str, values: list[str] | None, problem: str | None) -> None:
        if values is not None or problem is not None:
            self.odd[len(self.texts)] = (values, problem)
        self.numbers.append(number)
        self.texts.append(text)
        self.chars += len(text)

    def extend(self, numbers, texts: list[str], chars: int) -> None:
        """Plain records (`chars`: their texts' length, known to the caller)."""
        self.numbers.extend(numbers)
        self.texts += texts
        self.chars += chars

    def full(self, size: int, max_chars: int) -> bool:
        return len(self.texts) >= size or self.chars >= max_chars

    def fitting(self, size: int, max_chars: int) -> int:
        """How many leading records make a batch: at most `size`, and fewer than `max_chars`
        characters in all unless one record alone has more."""
        total = 0
        for count, text in enumerate(itertools.islice(self.texts, size)):
            total += len(text)
            if total >= max_chars:
                return max(count, 1)
        return min(size, len(self.texts))

    def record(self, index: int) -> tuple:
        """(row, text, values, problem); values None: split the text on the delimiter."""
        values, problem = self.odd.get(index, _PLAIN) if self.odd else _PLAIN
        return self.numbers[index], self.texts[index], values, problem

    def unusable(self) -> list[int]:
        """The indexes of the records that cannot be used."""
        return [index for index, (_, problem) in self.odd.items() if problem is not None]

    def cut(self, size: int) -> "RecordBatch":
        """The first `size` records, taken out of this batch."""
        odd = {}
        if self.odd:
            odd = {index: entry for index, entry in self.odd.items() if index < size}
            self.odd = {index - size: entry for index, entry in self.odd.items() if index >= size}
        head = RecordBatch(self.numbers[:size], self.texts[:size], odd)
        del self.numbers[:size], self.texts[:size]
        self.chars -= head.chars
        return head


_PLAIN = (None, None)


class CsvRows:
    """The header and the data records of one file; `row` numbers count the header as row 1.

    The file is read a block at a time. A block of whole lines with no quote and no NUL is
    split into records at once, each line one record whose cells are its text split on the
    delimiter (exactly what the csv module makes of such a line), and the split is left to the
    reader of the record (`values` is None). Any other block goes line by line: a line with no
    quote is split; a line with one starts a record that the csv module reads, over as many
    lines as its quoting needs. Each record comes with its raw text (without the final line
    end), so a caller can recognise a record it has seen before without splitting it.
    """

    def __init__(self, landed: LandedFile, facts: FileFacts, delimiter: str):
        # cp1252 leaves five bytes undefined; they become U+FFFD rather than stopping the import.
        errors = "replace" if facts.encoding == "cp1252" else "strict"
        self._handle = landed.text(facts.encoding, errors)
        self.delimiter = DELIMITERS[delimiter]
        self.row = 0
        self._partial = ""
        """Text read after the last line end (the start of a line)."""
        self._lines: list[str] = []
        """Whole physical lines (with their ends) read and not yet taken, oldest last."""
        try:
            self.header = self._header()
        except BaseException:
            self._handle.close()  # the caller's `with` never began
            raise

    def _block(self) -> str | None:
        """The next whole lines read from the file (ending in a line end), or None at its end."""
        if len(self._partial) > RECORD_LIMIT:
            raise self._too_long()  # the lines before it have been taken: it is the next one
        while True:
            block = self._handle.read(BLOCK)
            if not block:
                if not self._partial:
                    return None
                text, self._partial = self._partial + "\n", ""  # the last line, without its end
                return text
            text = self._partial + block
            # A \r at the very end may be the first half of \r\n: it waits for the next block.
            cut = max(text.rfind("\n"), text.rfind("\r", 0, len(text) - 1)) + 1
            self._partial = text[cut:]
            if not cut and len(self._partial) > RECORD_LIMIT:
                raise self._too_long()
            if cut:
                first_end = _RAW_LINE.match(text).end()
                if first_end > RECORD_LIMIT:
                    raise self._too_long()
                return text[:cut]

    def _too_long(self) -> CsvStructureError:
        return CsvStructureError(
            self.row + 1, f"a line is longer than {RECORD_LIMIT:,} characters; this is not a CSV file a person wrote"
        )

    def _read_line(self) -> str:
        """The next physical line with its end, "" at the end of the file."""
        if not self._lines:
            text = self._block()
            if text is None:
                return ""
            self._lines = _RAW_LINE.findall(text)
            self._lines.reverse()
        return self._lines.pop()

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

    def batches(self, size: int, max_chars: int):
        """`RecordBatch`es of up to `size` records and fewer than `max_chars` characters (a
        record longer than that is a batch alone), so that a batch's memory is bounded
        whatever the size of its records."""
        pending = RecordBatch([], [], {})
        rest = "".join(reversed(self._lines))  # the lines the header's block left
        if '"' not in rest and "\x00" not in rest:
            self._lines = []
            if rest:
                self._add_plain(pending, _line_texts(rest))
        while True:
            while pending.full(size, max_chars):
                yield pending.cut(pending.fitting(size, max_chars))
            if self._lines:
                record = self._next()
                if record is not None and record[1] != []:
                    pending.add(self.row, *record)
            else:
                text = self._block()
                if text is None:
                    break
                if '"' in text or "\x00" in text:
                    self._lines = _RAW_LINE.findall(text)
                    self._lines.reverse()
                    continue
                self._add_plain(pending, _line_texts(text))
        while pending.texts:
            yield pending.cut(pending.fitting(size, max_chars))

    def _add_plain(self, pending: "RecordBatch", texts: list[str]) -> None:
        """Lines without quotes or NULs: one record a line, a blank line none."""
        first = self.row + 1
        self.row += len(texts)
        if max(map(len, texts)) <= FIELD_SIZE_LIMIT:
            if "" not in texts:
                pending.extend(range(first, first + len(texts)), texts, sum(map(len, texts)))
            else:
                for offset, text in enumerate(texts):
                    if text:
                        pending.add(first + offset, text, None, None)
            return
        for offset, text in enumerate(texts):
            if text:
                values = text.split(self.delimiter)
                problem = _cell_problem(text, values)
                pending.add(first + offset, text, None if problem is None else values, problem)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _line_texts(text: str) -> list[str]:
    """The lines of `text` (which ends with a line end) without their ends, \r\n, \r and \n alike:
    split in C, by `str.splitlines` unless the text holds one of the other characters it breaks
    lines at, then by the regular expression."""
    if "\r" not in text:
        return text.split("\n")[:-1]
    if not any(mark in text for mark in (_ASCII_BREAKS if text.isascii() else _OTHER_BREAKS)):
        return text.splitlines()
    return _LINE_TEXT.findall(text)


_ASCII_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
_OTHER_BREAKS = (*_ASCII_BREAKS, "\x85", "\u2028", "\u2029")
"""What `str.splitlines` breaks lines at besides \r and \n: in a CSV file, text inside a cell."""


def _cell_problem(text: str, values: list[str]) -> str | None:
    """What makes a record unusable whatever its quoting: a NUL byte, or an oversized cell."""
    if "\x00" in text:
        return "the row contains a NUL byte; it is not text"
    if len(text) > FIELD_SIZE_LIMIT and any(len(value) > FIELD_SIZE_LIMIT for value in values):
        return f"a cell is longer than {FIELD_SIZE_LIMIT:,} characters"
    return None


def _explain(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a cell is longer than {FIELD_SIZE_LIMIT} characters; most likely a quote is never closed"
    if "NUL" in text:
        return "the file contains NUL bytes; it is not a text CSV file"
    if "unexpected end of data" in text:
        return "the file ends inside a quoted cell; a quote is never closed"
    return text
