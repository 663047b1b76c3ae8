"""Resumable sha256/sha512 candidates against hashlib: MB/s on 8 MiB and 256 MiB inputs,
hashed in 4 MiB updates (the upload layer's step). Prints figures; asserts nothing on time.

    python bench/resumable_hash_bench.py
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

STEP = 4 << 20
SIZES = {"8 MiB": 8 << 20, "256 MiB": 256 << 20}


def _hashlib(name: str) -> Callable[[memoryview], str]:
    def run(data: memoryview) -> str:
        hasher = hashlib.new(name)
        for start in range(0, len(data), STEP):
            hasher.update(data[start : start + STEP])
        return hasher.hexdigest()

    return run


def _rehashes(name: str) -> Callable[[memoryview], str]:
    import rehashes

    factory = {"sha256": rehashes.PySha256, "sha512": rehashes.PySha512}[name]

    def run(data: memoryview) -> str:
        hasher = factory()
        for start in range(0, len(data), STEP):
            hasher.update(bytes(data[start : start + STEP]))
            hasher = factory.deserialize(hasher.serialize())  # what a request boundary costs
        result = hasher.finalize()
        return result if isinstance(result, str) else bytes(result).hex()

    return run


def _resumablesha256(data: memoryview) -> str:
    import pickle

    import resumablesha256

    hasher = resumablesha256.sha256()
    for start in range(0, len(data), STEP):
        hasher.update(bytes(data[start : start + STEP]))
        hasher = pickle.loads(pickle.dumps(hasher))
    return hasher.hexdigest()


def main() -> None:
    candidates = {
        "hashlib sha256": _hashlib("sha256"),
        "rehashes sha256": _rehashes("sha256"),
        "resumablesha256": _resumablesha256,
        "hashlib sha512": _hashlib("sha512"),
        "rehashes sha512": _rehashes("sha512"),
    }
    for label, size in SIZES.items():
        data = memoryview(os.urandom(size))
        for name, run in candidates.items():
            expected = hashlib.new(name.split()[-1].replace("resumablesha256", "sha256"), data)
            best = float("inf")
            for _ in range(3 if size < 64 << 20 else 1):
                started = time.perf_counter()
                digest = run(data)
                best = min(best, time.perf_counter() - started)
            ok = "ok" if digest == expected.hexdigest() else f"WRONG {digest[:16]}"
            print(f"{label:>8}  {name:<17} {size / best / 1e6:8.0f} MB/s  {ok}")


if __name__ == "__main__":
    main()
