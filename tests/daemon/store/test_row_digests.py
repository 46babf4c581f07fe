"""The digest sets that recognise records a feed's last import left in the store."""

import random

from daemon.store.row_digests import DigestLog, DigestSet


def test_lookup_and_round_trip():
    rng = random.Random(3)
    present = {rng.getrandbits(64): key for key, _ in enumerate(range(5000))} | {0: 9001, 2**64 - 1: 9002}
    absent = list({rng.getrandbits(64) for _ in range(5000)} - set(present))
    log = DigestLog(None)
    for digest, key in present.items():
        log.keep(digest, key)
    table = log.result()
    assert len(table) == len(present)
    restored = DigestSet.from_bytes(*(bytes(blob) for blob in table.to_bytes()))
    for candidate in (table, restored):
        assert candidate.lookup(list(present)) == list(present.values())
        assert set(candidate.lookup(absent)) == {None}
        assert candidate.lookup([]) == []
    assert DigestSet().lookup([1]) == [None]


def test_the_last_word_on_a_record_wins():
    log = DigestLog(None)
    for digest, key in ((10, 1), (20, 2), (30, 3), (50, 5)):
        log.keep(digest, key)
    previous = log.result()
    log = DigestLog(previous)
    assert not log.touched(1)
    log.keep(11, 1)  # record 1 rewritten from another text: digest 10 is stale
    log.forget(2)  # record 2 written with a field dropped: no text says what it holds
    log.keep(40, 4)
    log.keep(41, 4)  # record 4 created, then changed in the same file
    log.forget(5)
    log.keep(50, 5)  # ... forgotten, then written from its text again
    assert log.touched(1) and log.touched(2) and not log.touched(3)
    after = log.result()
    assert after.lookup([10, 11, 20, 30, 40, 41, 50]) == [None, 1, None, 3, None, 4, 5]


def test_an_import_that_touches_nothing_keeps_the_set():
    log = DigestLog(None)
    log.keep(7, 1)
    previous = log.result()
    assert DigestLog(previous).result() is previous
