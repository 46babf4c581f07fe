"""CSV cells that are safe to open in a spreadsheet (OWASP's CSV-injection rule).

Excel, LibreOffice and Google Sheets run a cell that begins with `=`, `+`, `-` or `@` as a
formula (and tab or CR can hide such a start). Every CSV we write for a person (error
reports, exports) passes its cells through `spreadsheet_safe`, which prefixes those with a
single quote. A cell that already begins with a quote gets one too, so the raw value is
always the written value with one leading quote removed, if it has one. A cell that is a
plain number (`+12025550144`, `-3.5`) is left as it is: a spreadsheet reads it as a number,
nothing runs, and a partner's system reading an export must get phone numbers in E.164 as
they are. NUL bytes, which no spreadsheet shows and some reject, are written as U+FFFD.
"""

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
_SEPARATOR = "\x1f"
# A cell start that needs a quote, in a row's cells each preceded by _SEPARATOR.
_MAYBE_UNSAFE = re.compile(r"\x1f[=+\-@\t\r']")


_PLAIN_NUMBER = re.compile(r"[+-][0-9]+(?:\.[0-9]+)?")


def spreadsheet_safe(cell):
    if not isinstance(cell, str):
        return cell
    if "\x00" in cell:
        cell = cell.replace("\x00", "\ufffd")
    if not cell.startswith(FORMULA_STARTS) or _PLAIN_NUMBER.fullmatch(cell):
        return cell
    return "'" + cell


def spreadsheet_row(cells) -> list:
    """The row with every cell made safe. Most rows need nothing: one search over the joined
    row (in C) finds those, and only they are looked at cell by cell."""
    cells = list(cells)
    joined = _SEPARATOR + _SEPARATOR.join(map(str, cells))
    if "\x00" not in joined and _MAYBE_UNSAFE.search(joined) is None:
        return cells
    return [spreadsheet_safe(cell) for cell in cells]
