"""Sets of 64-bit record digests: what a feed's last import left in the store, to skip it next time.

A digest is a keyed hash of a record's raw text; it comes with the store key of the record
(contact or subscriber) that was last written from exactly that text. "This text's digest is
in the feed's set" therefore means "its record is as this text says", as long as nothing else
changed the partner's records since (the kinds keep a version for that) and no earlier row of
the same file rewrote it (`DigestLog.touched`). A set is two numpy arrays sorted by digest, 16
bytes a record, and a batch of texts is looked up in one vectorised call.

numpy: its sorted-array search and set operations run in C; the Python open-addressing table
this replaces cost two interpreted probes per row, about a third of a re-import.
"""

from array import array
from functools import partial

import numpy as np
import xxhash

DIGEST = np.dtype("<u8")
"""A digest: a seeded 64-bit XXH3 of the record's UTF-8 text, as a little-endian integer."""
_NO_DIGESTS = np.zeros(0, dtype=DIGEST)
_NO_KEYS = np.zeros(0, dtype=np.int64)
_PROBES = 8
"""Entries of a bucket looked at one by one before a binary search: at one entry a bucket on
average, a bucket holds more than eight about once in a million."""


class TextDigests:
    """Digests of record texts under a kind's key (a hash of its mapping and the file's header):
    the same text under another mapping or header has another digest.

    xxhash: XXH3 hashes a record in a tenth of a microsecond, and a batch is hashed by one `map`
    over C functions; the keyed blake2b it replaces was a third of a re-import. A digest only
    has to tell a partner's own records apart, not resist a forger: a partner who made two of
    its rows collide would only keep its own record as it was.
    """

    def __init__(self, key: bytes):
        self._digest = partial(xxhash.xxh3_64_digest, seed=int.from_bytes(key[:8], "little"))

    def one(self, text: str) -> bytes:
        return self._digest(text.encode("utf-8", "surrogatepass"))

    def many(self, texts: list[str]) -> bytes:
        """The digest of each text, end to end (what `DigestSet.lookup` reads)."""
        try:
            return b"".join(map(self._digest, map(str.encode, texts)))
        except UnicodeEncodeError:  # a lone surrogate: no decoded file has one, but be exact
            return b"".join(map(self.one, texts))


class DigestSet:
    """An immutable set of digests, each with the store key of its record."""

    def __init__(self, digests: np.ndarray = _NO_DIGESTS, keys: np.ndarray = _NO_KEYS):
        self._digests = digests
        self._keys = keys
        self._starts: np.ndarray | None = None
        """Where each bucket begins in the sorted digests (see `lookup`), made at the first one."""

    @classmethod
    def from_bytes(cls, digests: bytes | bytearray, keys: bytes | bytearray) -> "DigestSet":
        """A set over the two blobs `to_bytes` gave (no copy)."""
        return cls(np.frombuffer(digests, dtype=DIGEST), np.frombuffer(keys, dtype=np.int64))

    def to_bytes(self) -> tuple[memoryview, memoryview]:
        """The digests and the keys, each as a buffer a store binds as a blob (no copy made here)."""
        return (
            memoryview(np.ascontiguousarray(self._digests).data).cast("B"),
            memoryview(np.ascontiguousarray(self._keys).data).cast("B"),
        )

    def lookup(self, digests: bytes) -> list[int]:
        """For each digest of a batch (`TextDigests.many`), its record's key, or 0 when it is not in
        the set (store keys start at 1).

        Digests are uniform, so their top bits split the sorted set into buckets of about one
        entry each: a digest is found in a probe or two, where a binary search took twenty
        reads scattered over the set (a third of a re-import went to cache misses)."""
        wanted = np.frombuffer(digests, dtype=DIGEST)
        found = np.zeros(len(wanted), dtype=np.int64)
        if not len(self._digests):
            return found.tolist()
        if self._starts is None:
            self._shift = np.uint64(64 - len(self._digests).bit_length())
            counts = np.bincount((self._digests >> self._shift).astype(np.intp), minlength=2 ** (64 - int(self._shift)))
            self._starts = np.zeros(len(counts) + 1, dtype=np.int64 if len(self._digests) >= 2**31 else np.int32)
            np.cumsum(counts, out=self._starts[1:])
        bucket = (wanted >> self._shift).astype(np.intp)
        at, stop = self._starts[bucket], self._starts[bucket + 1]
        pending = np.flatnonzero(at < stop)  # the digests whose bucket is not empty
        at, stop = at[pending], stop[pending]
        for _ in range(_PROBES):
            if not len(pending):
                break
            hit = self._digests[at] == wanted[pending]
            found[pending[hit]] = self._keys[at[hit]]
            at += 1
            going_on = ~hit & (at < stop)
            pending, at, stop = pending[going_on], at[going_on], stop[going_on]
        if len(pending):  # crowded buckets (made on purpose?): a binary search for what is left
            at = np.minimum(np.searchsorted(self._digests, wanted[pending]), len(self._digests) - 1)
            hit = self._digests[at] == wanted[pending]
            found[pending[hit]] = self._keys[at[hit]]
        return found.tolist()

    def __len__(self) -> int:
        return len(self._digests)


class DigestLog:
    """The set an import leaves behind, built as it goes: `keep(digest, key)` when record `key`
    is now as the text of `digest` says, `forget(key)` when it is as no text says (written with
    a field dropped, or removed). The last word on a record wins; the previous set's entry for
    a record the import did not touch stays."""

    def __init__(self, previous: DigestSet | None):
        self._previous = previous
        self._digests = bytearray()
        self._keys = array("q")
        self._forgotten: set[int] = set()
        self._forgotten_arrays: list[np.ndarray] = []
        self._touched: set[int] | None = set() if previous is not None and len(previous) else None
        """Keys this import wrote or forgot: only needed (and kept) when there are known records."""

    def keep(self, digest: bytes, key: int) -> None:
        self._digests += digest
        self._keys.append(key)
        self._forgotten.discard(key)
        if self._touched is not None:
            self._touched.add(key)

    def keep_all(self, digests: bytes, keys: list[int]) -> None:
        """`keep` of each digest (`TextDigests.many`) with its key, for records new to the set."""
        self._digests += digests
        self._keys.extend(keys)
        if self._forgotten:
            self._forgotten.difference_update(keys)
        if self._touched is not None:
            self._touched.update(keys)

    def take_back(self, count: int) -> None:
        """Undo the last `count` entries `keep_all` made (their records were not written)."""
        if not count:
            return
        if self._touched is not None:
            self._touched.difference_update(self._keys[-count:])
        del self._digests[-8 * count :], self._keys[-count:]

    def forget(self, key: int) -> None:
        self._forgotten.add(key)
        if self._touched is not None:
            self._touched.add(key)

    def forget_all(self, keys: np.ndarray) -> None:
        """`forget` each of `keys` (records the import removed), after its last row."""
        self._forgotten_arrays.append(keys)

    def untouched(self, keys: list[int]) -> bool:
        """True when this import has neither rewritten nor forgotten any of `keys` so far: their
        entries in the previous set still hold."""
        return self._touched is None or self._touched.isdisjoint(keys)

    def result(self) -> DigestSet:
        """The set after the import; the log is spent (emptied) by it. This runs at the end of an
        import of any size, where memory is at its highest, so arrays the size of the set are
        made one or two at a time and the log's own buffers are let go as soon as they are read
        (a first import of 1.5M contacts peaked 35 MiB higher here before)."""
        if not self._keys and not self._forgotten and not self._forgotten_arrays and self._previous is not None:
            return self._previous  # every record as the last import left it
        keys = np.frombuffer(self._keys, dtype=np.int64)
        forgotten = np.concatenate(
            [np.fromiter(self._forgotten, dtype=np.int64, count=len(self._forgotten)), *self._forgotten_arrays]
        )
        # New records only (a first import): each key once, in increasing order, nothing to drop.
        chosen = None if not len(forgotten) and _strictly_increasing(keys) else _last_of_each(keys)
        if chosen is not None and len(forgotten):
            chosen = chosen[~np.isin(keys[chosen], forgotten)]
        digests = np.frombuffer(self._digests, dtype=DIGEST)
        if chosen is not None:
            digests = digests[chosen]
        by_digest = np.argsort(digests)
        digests = digests[by_digest]
        self._digests = bytearray()  # let the log's digests go (no view of them is left)
        keys = (keys if chosen is None else keys[chosen])[by_digest]
        del by_digest, chosen
        self._keys = array("q")
        if self._previous is None or not len(self._previous):
            return DigestSet(digests, keys)
        # The previous entries of records this import touched are stale; the rest stay, and the
        # new entries are merged in where their digests belong, one array at a time.
        fresh = _not_in(self._previous._keys, np.concatenate([keys, forgotten]))
        old = self._previous._digests[fresh]
        at = np.searchsorted(old, digests)
        digests = np.insert(old, at, digests)
        old = self._previous._keys[fresh]
        del fresh
        return DigestSet(digests, np.insert(old, at, keys))


def _not_in(keys: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """Which of `keys` are not among `dropped` (a few next to them: a re-import's changes), by a
    binary search of each in `dropped` sorted. `np.isin` sorts both together, and at 1M keys
    its scratch arrays were the peak of a re-import's memory."""
    if not len(dropped):
        return np.ones(len(keys), dtype=bool)
    dropped = np.unique(dropped)
    at = np.searchsorted(dropped, keys)
    np.minimum(at, len(dropped) - 1, out=at)
    kept: np.ndarray = dropped[at] != keys
    return kept


def _strictly_increasing(keys: np.ndarray) -> bool:
    return bool(np.all(keys[1:] > keys[:-1])) if len(keys) > 1 else True


def _last_of_each(keys: np.ndarray) -> np.ndarray:
    """The positions of the last entry for each distinct key."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    del ordered
    return order[last]
