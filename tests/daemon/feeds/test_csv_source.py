"""Reading partner CSV files: the block reader yields exactly what the line-by-line reader it
replaced yielded (tests/daemon/feeds/reference/csv_rows.py), and fails the same files with the
same errors, whatever the quoting, line ends, NULs, blank lines and block boundaries."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.feeds import csv_source
from daemon.feeds.csv_source import CsvRows, CsvStructureError, FileFacts, LandedFile
from tests.daemon.feeds.reference.csv_rows import LineByLineCsvRows


def read(cls, path, facts, delimiter, max_chars=1 << 30):
    """Every record as (row, text, values, problem), or the structure error."""
    try:
        with LandedFile(path) as landed, cls(landed, facts, delimiter) as rows:
            header = rows.header
            if cls is CsvRows:
                batches = list(rows.batches(3, max_chars))
                for batch in batches:
                    assert len(batch) == 1 or batch.chars < max_chars, "a batch over its bound"
                    assert batch.chars == sum(map(len, batch.texts))
                records = [batch.record(index) for batch in batches for index in range(len(batch))]
                records = [
                    (row, text, text.split(rows.delimiter) if values is None and problem is None else values, problem)
                    for row, text, values, problem in records
                ]
            else:
                records = list(rows)
            return header, records
    except CsvStructureError as exc:
        return f"error at row {exc.row}: {exc}"


# Besides CSV's own marks: the characters `str.splitlines` also breaks lines at, which are text here.
breaks = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
pieces = st.sampled_from(
    ["a", "bc", ",", "\t", '"', '""', "\n", "\r\n", "\r", "\x00", " ", "é", "x" * 40, ",,", *breaks]
)
files = st.lists(pieces, max_size=60).map("".join)


@settings(max_examples=3000, deadline=None)
@given(
    files, st.sampled_from(["comma", "tab"]), st.sampled_from([1, 2, 5, 16, 1 << 20]), st.sampled_from([3, 40, 1 << 30])
)
def test_block_reader_matches_the_line_by_line_reader(tmp_path_factory, text, delimiter, block, max_chars):
    """Batches bounded by characters as well as records, too."""
    path = tmp_path_factory.getbasetemp() / "generated.csv"
    path.write_text(text, encoding="utf-8", newline="")
    facts = FileFacts("", len(text), "utf-8-sig")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_source, "BLOCK", block)
        expected = read(LineByLineCsvRows, path, facts, delimiter)
        assert read(CsvRows, path, facts, delimiter, max_chars) == expected


@pytest.mark.parametrize("block", [1 << 16, 1 << 20])
@pytest.mark.parametrize(
    "text",
    [
        "h1,h2\n" + "a" * (csv_source.RECORD_LIMIT + 5) + "\nb,c\n",  # a line over the limit
        "h1,h2\nx,y\n" + "a" * (csv_source.RECORD_LIMIT + 5),  # ... the last one, without its end
        'h1,h2\nx,"' + "a\n" * (csv_source.RECORD_LIMIT // 2 + 5),  # a quote never closed
        "h1,h2\n" + "a" * (csv_source.FIELD_SIZE_LIMIT + 5) + ",b\nc,d\n",  # a cell over the limit
    ],
    ids=["long-line", "long-last-line", "quote-never-closed", "long-cell"],
)
def test_oversized_lines_fail_alike(tmp_path, monkeypatch, text, block):
    path = tmp_path / "big.csv"
    path.write_text(text, encoding="utf-8", newline="")
    facts = FileFacts("", len(text), "utf-8-sig")
    monkeypatch.setattr(csv_source, "BLOCK", block)
    assert read(CsvRows, path, facts, "comma") == read(LineByLineCsvRows, path, facts, "comma")
