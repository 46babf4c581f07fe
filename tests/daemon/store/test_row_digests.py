"""The digest sets that recognise records a feed's last import left in the store."""

import random

from daemon.store.row_digests import DigestLog, DigestSet


def d(number: int) -> bytes:
    """A digest (8 bytes) made from a number, for readable tests."""
    return number.to_bytes(8, "little")


def joined(numbers) -> bytes:
    return b"".join(d(number) for number in numbers)


def test_lookup_and_round_trip():
    rng = random.Random(3)
    present = {rng.getrandbits(64): key for key in range(1, 5001)} | {0: 9001, 2**64 - 1: 9002}
    absent = list({rng.getrandbits(64) for _ in range(5000)} - set(present))
    log = DigestLog(None)
    for digest, key in present.items():
        log.keep(d(digest), key)
    table = log.result()
    assert len(table) == len(present)
    restored = DigestSet.from_bytes(*(bytes(blob) for blob in table.to_bytes()))
    for candidate in (table, restored):
        assert candidate.lookup(joined(present)) == list(present.values())
        assert set(candidate.lookup(joined(absent))) == {0}
        assert candidate.lookup(b"") == []
    assert DigestSet().lookup(d(1)) == [0]


def test_digests_crowded_into_few_buckets_are_found():
    """Buckets are cut by a digest's top bits: small numbers all fall into the first one, and
    a partner could craft rows that do the same."""
    present = {number: number + 7 for number in range(1, 3000, 3)} | {2**64 - 5: 1, 2**63: 2}
    log = DigestLog(None)
    for digest, key in present.items():
        log.keep(d(digest), key)
    table = log.result()
    everything = list(range(3010)) + [2**64 - 5, 2**63, 2**63 + 1, 2**64 - 1]
    assert table.lookup(joined(everything)) == [present.get(number, 0) for number in everything]
    single = DigestLog(None)
    single.keep(d(2**63), 5)
    assert single.result().lookup(joined([2**63, 0, 2**63 - 1, 2**64 - 1])) == [5, 0, 0, 0]


def test_the_last_word_on_a_record_wins():
    log = DigestLog(None)
    for digest, key in ((10, 1), (20, 2), (30, 3), (50, 5)):
        log.keep(d(digest), key)
    previous = log.result()
    log = DigestLog(previous)
    assert log.untouched([1, 2, 3])
    log.keep(d(11), 1)  # record 1 rewritten from another text: digest 10 is stale
    log.forget(2)  # record 2 written with a field dropped: no text says what it holds
    log.keep(d(40), 4)
    log.keep(d(41), 4)  # record 4 created, then changed in the same file
    log.forget(5)
    log.keep(d(50), 5)  # ... forgotten, then written from its text again
    assert not log.untouched([1]) and not log.untouched([2]) and log.untouched([3])
    after = log.result()
    assert after.lookup(joined([10, 11, 20, 30, 40, 41, 50])) == [0, 1, 0, 3, 0, 4, 5]


def test_an_import_that_touches_nothing_keeps_the_set():
    log = DigestLog(None)
    log.keep(d(7), 1)
    previous = log.result()
    assert DigestLog(previous).result() is previous
