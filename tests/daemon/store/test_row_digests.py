"""The flat digest set used to recognise records a feed already applied."""

import random

from daemon.store.row_digests import DigestTable


def test_membership_growth_and_round_trip():
    rng = random.Random(3)
    present = {rng.getrandbits(64) for _ in range(5000)} | {0, 1, 2**64 - 1}
    absent = {rng.getrandbits(64) for _ in range(5000)} - present
    table = DigestTable()
    for digest in present:
        table.add(digest)
        table.add(digest)
    assert len(table) == len(present) - 1  # 0 and 1 share a slot value by design
    restored = DigestTable.from_bytes(table.to_bytes())
    for candidate in (table, restored):
        assert all(digest in candidate for digest in present)
        assert not any(digest in candidate for digest in absent)
    assert len(table.slots) >= 2 * len(table)
