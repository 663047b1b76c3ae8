"""The access generation, and the caches of the request path that it keeps correct.

Who a token's user is, whether their personal access token still stands, and what they may do
in a registry are database rows read on every request; they change rarely. Triggers
(migration 0014) raise one counter, `access_generation`, in the transaction
of every change to those rows, wherever it comes from (any worker, any instance, the CLI, SQL
by hand). A request reads the counter once, first (one indexed row: the cheapest statement
there is), and then trusts what a cache holds from that same generation; anything else it
reads again and keeps under the generation it read first.

Why that is exact, not merely fast: an entry is only ever used by a request that read the
counter after the change it must see had committed, and a committed change has raised it; an
entry filled from rows newer than its generation label is only ever too new, never stale.
So a revoked token, a disabled user, a changed visibility or membership take effect on the
very next request, on every worker and every instance: the bound is zero.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from ociregistry.db.database import Database

V = TypeVar("V")
_READ = "SELECT value FROM access_generation WHERE id = 1"
DEFAULT_ENTRIES = 8192


async def current_generation(db: Database) -> int:
    """The access generation now: read it before anything it vouches for."""
    value = await db.value(_READ)
    return int(value or 0)


class GenerationCache(Generic[V]):
    """Values by key, each kept with the generation it was read under; a lookup under any
    other generation misses. Least recently used entries go first past `entries`."""

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        self.entries = entries
        self._items: OrderedDict[Hashable, tuple[int, V]] = OrderedDict()

    def get(self, key: Hashable, generation: int) -> tuple[bool, V | None]:
        """(True, value) when `key` was cached under `generation`, else (False, None)."""
        item = self._items.get(key)
        if item is None or item[0] != generation:
            return False, None
        self._items.move_to_end(key)
        return True, item[1]

    def put(self, key: Hashable, generation: int, value: V) -> None:
        self._items[key] = (generation, value)
        self._items.move_to_end(key)
        if len(self._items) > self.entries:
            self._items.popitem(last=False)
