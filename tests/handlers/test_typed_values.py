"""Typed values: the shortcut for UTC times gives exactly what the general date parser gives."""

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.typed_values import boolean_column, date_text, parse_boolean, parse_date, utc_column

digits = lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)  # noqa: E731
utc_like = st.builds(
    lambda y, mo, d, h, mi, s, sep, end, pad: f"{pad}{y}-{mo}-{d}{sep}{h}:{mi}:{s}{end}{pad}",
    digits(4), digits(2), digits(2), digits(2), digits(2), digits(2),
    st.sampled_from(["T", " ", "t"]), st.sampled_from(["Z", "", "+00:00", "+02:00", "z", ".5Z"]),
    st.sampled_from(["", " "]),
)  # fmt: skip
real_times = st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 30)).map(
    lambda moment: moment.replace(microsecond=0).isoformat() + "Z"
)


def reference(text: str, timezone: str):
    try:
        return parse_date(text, timezone).isoformat()
    except ValueError as exc:
        return f"error: {exc}"


def shortcut(text: str, timezone: str):
    try:
        return date_text(text, timezone)
    except ValueError as exc:
        return f"error: {exc}"


@settings(max_examples=3000, deadline=None)
@given(st.one_of(utc_like, real_times, st.text(max_size=25)), st.sampled_from(["UTC", "America/New_York"]))
def test_date_text_matches_the_general_parser(text, timezone):
    assert shortcut(text, timezone) == reference(text, timezone)


def column_reference(cells: list[str]):
    try:
        return [date_text(cell, "UTC") for cell in cells]
    except ValueError:
        return None


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.one_of(real_times, utc_like, real_times.map(lambda text: text.replace("Z", "z"))), max_size=6))
def test_a_column_of_utc_times_is_what_each_cell_gives(cells):
    cells = [cell.strip() for cell in cells]  # as `Row.cells` gives them
    column = utc_column(cells)
    if column is not None:
        assert column == column_reference(cells)


@settings(max_examples=500, deadline=None)
@given(st.lists(real_times, max_size=6))
def test_a_column_of_real_utc_times_is_read_at_once(cells):
    assert utc_column(cells) == column_reference(cells)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.sampled_from(["true", "FALSE", "Yes", "n", "1", "0", "t", "F", "maybe", "", "tru", "İ"]), max_size=6)
)
def test_a_column_of_booleans_is_what_each_cell_gives(cells):
    try:
        expected = [parse_boolean(cell) for cell in cells]
    except ValueError:
        expected = None
    assert boolean_column(cells) == expected
