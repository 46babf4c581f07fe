"""Spreadsheet-safe CSV cells: the row-at-once fast path gives exactly what the per-cell rule does."""

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.runs.spreadsheet import spreadsheet_row, spreadsheet_safe

cell = st.one_of(
    st.text(alphabet=st.sampled_from(list("=+-@\t\r'\x00\x1fab1 ,\"")), max_size=6),
    st.text(max_size=8),
    st.integers(-5, 5),
    st.none(),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(cell, max_size=8))
def test_the_fast_path_equals_the_rule_cell_by_cell(cells):
    assert spreadsheet_row(cells) == [spreadsheet_safe(c) for c in cells]


def test_the_rule():
    assert spreadsheet_row(["=1+1", "+1+1", "-2-A1", "@x", "\tx", "\rx", "'x", "a\x00b", "fine", 7]) == [
        "'=1+1", "'+1+1", "'-2-A1", "'@x", "'\tx", "'\rx", "''x", "a\ufffdb", "fine", 7,
    ]  # fmt: skip


def test_a_plain_number_is_left_as_it_is():
    """A phone in E.164 and a negative number are numbers to a spreadsheet, not formulas; a
    partner's CRM must get them as they are (the contacts export writes every phone)."""
    assert spreadsheet_row(["+12025550144", "-3.5", "+1", "-2", "+1e5", "+ 1"]) == [
        "+12025550144", "-3.5", "+1", "-2", "'+1e5", "'+ 1",
    ]  # fmt: skip
