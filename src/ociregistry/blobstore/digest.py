"""Content digests (`algorithm:hex`): the names of every blob and manifest.

Only sha256 and sha512 are accepted. A digest is parsed once, at the edge; from then on the
registry handles `Digest` values, whose hex part is known to be safe inside a storage path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ociregistry.errors import DigestInvalid, Unsupported

HEX_LENGTHS = {"sha256": 64, "sha512": 128}
DEFAULT_ALGORITHM = "sha256"

# The OCI image-spec grammar: algorithm ":" encoded.
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and check a digest; raise DIGEST_INVALID (malformed) or UNSUPPORTED."""
        shown = text[:200]
        if _GRAMMAR.fullmatch(text) is None:
            raise DigestInvalid(
                f"invalid digest {shown!r}: expected algorithm:hex, e.g. sha256:<64 hex digits>",
                detail={"digest": shown},
            )
        algorithm, _, encoded = text.partition(":")
        length = HEX_LENGTHS.get(algorithm)
        if length is None:
            raise Unsupported(
                f"digest algorithm {algorithm!r} is not supported; use sha256 or sha512",
                detail={"digest": shown},
            )
        if len(encoded) != length or _HEX.fullmatch(encoded) is None:
            raise DigestInvalid(
                f"invalid {algorithm} digest {shown!r}: expected {length} lower-case hex digits",
                detail={"digest": shown},
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def is_digest(reference: str) -> bool:
    """Whether a manifest reference is meant as a digest (it has a colon) rather than a tag."""
    return ":" in reference
