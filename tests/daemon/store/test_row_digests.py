"""The digest sets that recognise records a feed's last import left in the store."""

import random

from daemon.store.row_digests import DigestLog, DigestSet


def test_membership_and_round_trip():
    rng = random.Random(3)
    present = {rng.getrandbits(64) for _ in range(5000)} | {0, 1, 2**64 - 1}
    absent = list({rng.getrandbits(64) for _ in range(5000)} - present)
    log = DigestLog(None)
    for digest in present:
        log.keep(digest)
        log.keep(digest)
    table = log.result()
    assert len(table) == len(present)
    restored = DigestSet.from_bytes(table.to_bytes())
    for candidate in (table, restored):
        assert None not in candidate.lookup(list(present))
        assert set(candidate.lookup(absent)) == {None}
        assert candidate.lookup([]) == []


def test_the_last_word_on_a_digest_wins():
    assert len(DigestSet.from_bytes(DigestLog(None).result().to_bytes())) == 0
    log = DigestLog(None)
    for digest in (1, 2, 3):
        log.keep(digest)
    previous = log.result()
    log = DigestLog(previous)
    log.drop(1)  # rewritten from other cells
    log.drop(2)
    log.keep(2)  # ... and back
    log.keep(4)
    log.drop(4)
    log.keep(5)
    assert log.result().lookup([1, 2, 3, 4, 5, 6]) == [None, 0, 0, None, 0, None]
    assert DigestSet().lookup([1]) == [None]


def test_values_keep_their_last_digest():
    log = DigestLog(None, one_per_value=True)
    log.keep(10, 1)
    log.keep(20, 2)
    log.keep(30, 3)
    previous = DigestSet.from_bytes(log.result().to_bytes())
    log = DigestLog(previous, one_per_value=True)
    log.keep(11, 1)  # record 1 rewritten from other cells: digest 10 is gone
    log.keep(20, 2)  # record 2 named again, unchanged
    log.keep(40, 4)
    log.keep(41, 4)  # record 4 created, then changed in the same file
    after = log.result(without_values=[3])  # record 3 removed
    assert after.lookup([10, 11, 20, 30, 40, 41]) == [None, 1, 2, None, None, 4]
