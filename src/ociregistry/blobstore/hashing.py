"""A sha256 whose state can be saved with an upload session and resumed anywhere.

A chunk of a chunked upload may land on any worker or instance; the hash continues from the
state saved in the session row, so no byte is ever read back to hash it. `rehashes` (Rust's
`sha2`, measured in `bench/resumable_hash_bench.py` at or above hashlib's sha256 on this
machine) serialises its state in 104 bytes. Its sha512 runs at about 60 % of hashlib's, so
sha512 is hashed with hashlib, for bytes that arrive in the request that names the digest
(an upload's only request); a chunked upload finished with a sha512 digest is hashed from
storage at the end, as Distribution does for digests that are not its canonical one.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import rehashes

from ociregistry.blobstore.digest import DEFAULT_ALGORITHM, Digest


class Hasher(Protocol):
    algorithm: str

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def digest(self) -> Digest: ...


class ResumableSha256:
    """sha256 with a state that survives the process (`state()`, `resume()`)."""

    algorithm = DEFAULT_ALGORITHM

    def __init__(self, state: bytes | None = None) -> None:
        self._hash = rehashes.PySha256.deserialize(state) if state else rehashes.PySha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # It takes `bytes` only, and holds the GIL while it hashes (about 3 ms per 4 MiB).
        self._hash.update(data if isinstance(data, bytes) else bytes(data))

    def state(self) -> bytes:
        return bytes(self._hash.serialize())

    def digest(self) -> Digest:
        copy = rehashes.PySha256.deserialize(self._hash.serialize())
        return Digest(self.algorithm, str(copy.finalize()))


class OneShotHash:
    """Any hashlib algorithm, for bytes that all arrive in one request."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())
