"""CSV cells that are safe to open in a spreadsheet (OWASP's CSV-injection rule).

Excel, LibreOffice and Google Sheets run a cell that begins with `=`, `+`, `-` or `@` as a
formula (and tab or CR can hide such a start). Every CSV we write for a person (error
reports, exports) passes its cells through `spreadsheet_safe`, which prefixes those with a
single quote. A cell that already begins with a quote gets one too, so the raw value is
always the written value with one leading quote removed, if it has one. NUL bytes, which no
spreadsheet shows and some reject, are written as U+FFFD.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(cell):
    if not isinstance(cell, str):
        return cell
    if "\x00" in cell:
        cell = cell.replace("\x00", "\ufffd")
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def spreadsheet_row(cells) -> list:
    return [spreadsheet_safe(cell) for cell in cells]
