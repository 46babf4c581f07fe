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

import hashlib
from array import array

import numpy as np

DIGEST = np.dtype("<u8")
"""A digest: 8 bytes of a keyed blake2b, read as a little-endian integer wherever it is sorted."""
_NO_DIGESTS = np.zeros(0, dtype=DIGEST)
_NO_KEYS = np.zeros(0, dtype=np.int64)


def text_digest(key: bytes, text: str) -> bytes:
    """The digest of a record's raw text under a kind's key (its mapping and the file's header)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=key).digest()


def text_digests(key: bytes, texts: list[str]) -> bytes:
    """`text_digest` of each text, end to end (what `DigestSet.lookup` reads)."""
    blake2b = hashlib.blake2b
    return b"".join([blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=key).digest() for text in texts])


class DigestSet:
    """An immutable set of digests, each with the store key of its record."""

    def __init__(self, digests: np.ndarray = _NO_DIGESTS, keys: np.ndarray = _NO_KEYS):
        self._digests = digests
        self._keys = keys

    @classmethod
    def from_bytes(cls, digests, keys) -> "DigestSet":
        """A set over the two blobs `to_bytes` gave (no copy)."""
        return cls(np.frombuffer(digests, dtype=DIGEST), np.frombuffer(keys, dtype=np.int64))

    def to_bytes(self) -> tuple[memoryview, memoryview]:
        """The digests and the keys, each as a buffer a store binds as a blob (no copy made here)."""
        return (
            memoryview(np.ascontiguousarray(self._digests)).cast("B"),
            memoryview(np.ascontiguousarray(self._keys)).cast("B"),
        )

    def lookup(self, digests: bytes) -> list[int]:
        """For each digest of a batch (`text_digests`), its record's key, or 0 when it is not in
        the set (store keys start at 1)."""
        wanted = np.frombuffer(digests, dtype=DIGEST)
        if not len(self._digests):
            return [0] * len(wanted)
        # Searched in digest order, so that neighbouring searches touch neighbouring memory.
        order = np.argsort(wanted)
        positions = np.empty(len(wanted), dtype=np.intp)
        positions[order] = np.searchsorted(self._digests, wanted[order])
        positions[positions == len(self._digests)] = 0
        return np.where(self._digests[positions] == wanted, self._keys[positions], 0).tolist()

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
        """The set after the import. Arrays the size of the set are made one or two at a time:
        this runs at the end of an import of any size, where memory is at its highest."""
        if not self._keys and not self._forgotten and not self._forgotten_arrays and self._previous is not None:
            return self._previous  # every record as the last import left it
        digests = np.frombuffer(self._digests, dtype=DIGEST)
        keys = np.frombuffer(self._keys, dtype=np.int64)
        chosen = _last_of_each(keys)
        forgotten = np.concatenate(
            [np.fromiter(self._forgotten, dtype=np.int64, count=len(self._forgotten)), *self._forgotten_arrays]
        )
        if len(forgotten):
            chosen = chosen[~np.isin(keys[chosen], forgotten)]
        by_digest = chosen[np.argsort(digests[chosen])]
        del chosen
        digests, keys = digests[by_digest], keys[by_digest]
        del by_digest
        if self._previous is None or not len(self._previous):
            return DigestSet(digests, keys)
        # The previous entries of records this import touched are stale; the rest stay, and the
        # new entries are merged in where their digests belong.
        fresh = ~np.isin(self._previous._keys, np.concatenate([keys, forgotten]))
        old_digests, old_keys = self._previous._digests[fresh], self._previous._keys[fresh]
        del fresh
        at = np.searchsorted(old_digests, digests)
        return DigestSet(np.insert(old_digests, at, digests), np.insert(old_keys, at, keys))


def _last_of_each(keys: np.ndarray) -> np.ndarray:
    """The positions of the last entry for each distinct key."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    del ordered
    return order[last]
