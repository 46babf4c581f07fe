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
