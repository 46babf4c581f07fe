"""Text from partners shown to people: escaped where it could forge a line or move a terminal."""

import io

import structlog
from hypothesis import given
from hypothesis import strategies as st

from daemon.logs import configure_logging
from daemon.text import printable


def test_control_line_and_direction_characters_are_escaped_and_the_rest_kept():
    assert printable("StudentData_2026.csv") == "StudentData_2026.csv"
    assert printable("a\r\nb\tc") == "a\\r\\nb\\tc"
    assert printable("\x1b[2J\x1b]0;title\x07") == "\\x1b[2J\\x1b]0;title\\x07"
    assert printable("évidence \u202egnp.exe") == "évidence \\u202egnp.exe"
    assert printable("line\u2028sep\x85") == "line\\u2028sep\\x85"


@given(st.text())
def test_nothing_printable_leaves_a_control_or_line_break(text):
    shown = printable(text)
    assert not any(character in shown for character in "\r\n\x1b\x00\x7f\u2028\u2029\u202e")
    assert shown.splitlines() in ([shown], [])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_on_a_terminal_show_partner_text_escaped():
    """structlog's console renderer quotes such a value (repr); this keeps it that way."""
    terminal = Terminal()
    configure_logging(stream=terminal)
    structlog.get_logger("test").info("file.arrived", path="/imports/a\x1b[2J\r\nforged_line")
    line = terminal.getvalue()
    assert line.count("\n") == 1 and line.endswith("\n") and "\x1b" not in line and "\r" not in line
    assert "x1b[2J" in line and "forged_line" in line
