"""A set of 64-bit row digests in one flat array: what a feed's last import applied cleanly.

Open addressing with linear probing in an `array('Q')`, at most half full: 16 bytes a row
at worst, where a Python set of ints would take about 60. Zero marks an empty slot, so a
digest of zero is stored as one.
"""

from array import array

_MIN_SLOTS = 1024


class DigestTable:
    def __init__(self, expected: int = 0):
        size = _MIN_SLOTS
        while size < 2 * expected:
            size *= 2
        self.slots = array("Q", bytes(8 * size))
        self.mask = size - 1
        self.count = 0

    @classmethod
    def from_bytes(cls, blob: bytes) -> "DigestTable":
        table = cls()
        table.slots = array("Q")
        table.slots.frombytes(blob)
        table.mask = len(table.slots) - 1
        table.count = sum(1 for slot in table.slots if slot)
        return table

    def to_bytes(self) -> bytes:
        return self.slots.tobytes()

    def __contains__(self, digest: int) -> bool:
        digest = digest or 1
        slots, mask = self.slots, self.mask
        index = digest & mask
        while True:
            slot = slots[index]
            if slot == digest:
                return True
            if not slot:
                return False
            index = (index + 1) & mask

    def add(self, digest: int) -> None:
        digest = digest or 1
        if 2 * (self.count + 1) > len(self.slots):
            self._grow()
        slots, mask = self.slots, self.mask
        index = digest & mask
        while True:
            slot = slots[index]
            if slot == digest:
                return
            if not slot:
                slots[index] = digest
                self.count += 1
                return
            index = (index + 1) & mask

    def _grow(self) -> None:
        old = self.slots
        self.slots = array("Q", bytes(16 * len(old)))
        self.mask = len(self.slots) - 1
        self.count = 0
        for digest in old:
            if digest:
                self.add(digest)

    def __len__(self) -> int:
        return self.count
