"""How many connections each worker holds, in a table every worker of `serve` shares.

The supervisor makes the table (a small anonymous file, `memfd_create`) and hands it to each
worker with a slot of its own; a worker writes its count into its slot whenever a connection
comes in, and reads the others' to decide whether it should take that connection
(`ops/accept.py` says why). A slot nobody serves from (no worker yet, or one that exited or is
retiring) holds `UNUSED`, a count no worker reaches, so it never looks like the least busy.

The supervisor imports this module, so it uses the standard library only. Each slot is one
aligned 8-byte word, written whole: a reader sees the old count or the new one, and a count a
moment old is good enough to share connections by.
"""

from __future__ import annotations

import mmap
import os
import struct

SLOT = struct.Struct("=q")
UNUSED = 1 << 62


class ConnectionTable:
    """`slots` counts in the shared file `fd` (made by `create`)."""

    def __init__(self, fd: int, slots: int) -> None:
        self.fd = fd
        self.slots = slots
        self._map = mmap.mmap(fd, slots * SLOT.size)

    @classmethod
    def create(cls, slots: int) -> ConnectionTable:
        """A new table, every slot unused; its `fd` is inheritable, for `pass_fds`."""
        fd = os.memfd_create("ociregistry-connections", 0)  # no MFD_CLOEXEC: workers get it
        os.ftruncate(fd, slots * SLOT.size)
        table = cls(fd, slots)
        for slot in range(slots):
            table.release(slot)
        return table

    def publish(self, slot: int, count: int) -> None:
        SLOT.pack_into(self._map, slot * SLOT.size, count)

    def release(self, slot: int) -> None:
        """The slot's worker takes no more connections (it stopped, or is stopping)."""
        self.publish(slot, UNUSED)

    def count(self, slot: int) -> int:
        return int(SLOT.unpack_from(self._map, slot * SLOT.size)[0])

    def fewest_elsewhere(self, slot: int) -> int:
        """The smallest count of the other workers (`UNUSED` when none serves)."""
        return min(
            (self.count(other) for other in range(self.slots) if other != slot), default=UNUSED
        )
