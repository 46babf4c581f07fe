"""Text from outside (file names, cells, reasons quoting them) made safe to show to a person.

A partner chooses its file names and cell values. Shown raw, a line break in one forges a
header in a mail or a line in a listing, and an escape sequence rewrites a terminal's screen
or title. `printable` writes every control character, and the invisible characters that
reorder or break lines, as an escape (`\\r`, `\\x1b`, `\\u202e`), so what a person reads is
what the partner sent, and nothing else happens.
"""

import re

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def printable(text: str) -> str:
    """`text` with control, line-separator and bidirectional-control characters escaped."""
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    character = match.group()
    if character in _ESCAPES:
        return _ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


QUOTED_MOST = 80
"""Characters of a partner's value a message quotes at most."""


def quoted(value: object) -> str:
    """A partner's value inside a sentence: in double quotes, printable, cut at QUOTED_MOST.
    Not `repr`: its single quotes start a cell that spreadsheets guard with another quote
    (`''555'`), and it switches to double quotes when the value holds a single one."""
    text = printable(str(value))
    if len(text) > QUOTED_MOST:
        text = text[: QUOTED_MOST - 1] + "…"
    return f'"{text}"'
