"""Companion files' names, as partners know them: `list_count.txt` beside `list.csv`.

Imports read count files (`daemon/feeds/count_files.py`); exports write them.
"""

COUNT_SUFFIX = "_count.txt"
CHECKSUM_SUFFIX = ".sha256"
"""An export's checksum file is `<file>.sha256`, as `sha256sum` writes it."""


def count_name(data_name: str) -> str:
    """`conversations_20261204T050000Z.csv` -> `conversations_20261204T050000Z_count.txt`."""
    stem, dot, _ = data_name.rpartition(".")
    return (stem if dot else data_name) + COUNT_SUFFIX
