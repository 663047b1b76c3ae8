"""A sha256 whose state can be saved with an upload session and resumed anywhere.

A chunk of a chunked upload may land on any worker or instance; the hash continues from the
state saved in the session row, so no byte is ever read back to hash it.

The hash is OpenSSL's, the code hashlib runs (SHA-NI or AVX2, 1,800 MB/s on one core here),
called through its SHA-256 functions (`SHA256_Init`/`_Update`/`_Final`, which OpenSSL 3 still
exports), whose state is a plain 112-byte struct (`SHA256_CTX`, unchanged since OpenSSL 0.9)
that can be saved and restored; hashlib itself offers no way to save a state. Called through
ctypes, the hashing releases the GIL, so the event loop goes on receiving the next batch while
a worker thread hashes the last one. `rehashes` (Rust's `sha2`), used before, holds the GIL
while it hashes (3 ms per 4 MiB): a chunked upload's receiving stopped for every batch's hash.
It remains for the states it saved (104 bytes, no tag) and where no libcrypto is found.

sha512 is hashed with hashlib, for bytes that arrive in the request that names the digest (an
upload's only request); a chunked upload finished with a sha512 digest is hashed from storage
at the end, as Distribution does for digests that are not its canonical one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Protocol

import rehashes

from ociregistry.blobstore.digest import DEFAULT_ALGORITHM, Digest


class Hasher(Protocol):
    algorithm: str

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def digest(self) -> Digest: ...


class _ShaContext(ctypes.Structure):
    """OpenSSL's `SHA256_CTX` (<openssl/sha.h>)."""

    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


def _libcrypto() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    try:
        library = ctypes.CDLL(name) if name else None
        if library is None:
            return None
        for function in (library.SHA256_Init, library.SHA256_Update, library.SHA256_Final):
            function.restype = ctypes.c_int
        library.SHA256_Init.argtypes = [ctypes.POINTER(_ShaContext)]
        library.SHA256_Update.argtypes = [
            ctypes.POINTER(_ShaContext),
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
        library.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.POINTER(_ShaContext)]
    except (OSError, AttributeError):
        return None
    return library


_CRYPTO = _libcrypto()
_STATE_TAG = b"openssl-sha256:"  # then the struct; rehashes' states are 104 bytes, untagged
_STATE_SIZE = len(_STATE_TAG) + ctypes.sizeof(_ShaContext)


class ResumableSha256:
    """sha256 with a state that survives the process (`state()`, and `ResumableSha256(state)`
    to go on)."""

    algorithm = DEFAULT_ALGORITHM

    def __init__(self, state: bytes | None = None) -> None:
        self._context: _ShaContext | None = None
        self._rehashes: rehashes.PySha256 | None = None
        if state and not state.startswith(_STATE_TAG):
            self._rehashes = rehashes.PySha256.deserialize(state)  # saved before OpenSSL
        elif _CRYPTO is None:
            if state:
                raise ValueError("an OpenSSL sha256 state, and no libcrypto to continue it")
            self._rehashes = rehashes.PySha256()
        elif state:
            if len(state) != _STATE_SIZE:
                raise ValueError(f"a sha256 state of {len(state)} bytes")
            self._context = _ShaContext.from_buffer_copy(state, len(_STATE_TAG))
            if self._context.num >= 64 or self._context.md_len != 32:
                raise ValueError("not a sha256 state")
        else:
            self._context = _ShaContext()
            _CRYPTO.SHA256_Init(ctypes.byref(self._context))

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Hash `data`; OpenSSL does it without the GIL."""
        if not isinstance(data, bytes):
            data = bytes(data)  # ctypes passes `bytes` without a copy; nothing else here does
        if self._rehashes is not None:
            self._rehashes.update(data)  # holds the GIL while it hashes
            return
        assert _CRYPTO is not None and self._context is not None
        _CRYPTO.SHA256_Update(ctypes.byref(self._context), data, len(data))

    def state(self) -> bytes:
        if self._rehashes is not None:
            return bytes(self._rehashes.serialize())
        return _STATE_TAG + bytes(self._context)  # type: ignore[arg-type]

    def digest(self) -> Digest:
        if self._rehashes is not None:
            copy = rehashes.PySha256.deserialize(self._rehashes.serialize())
            return Digest(self.algorithm, str(copy.finalize()))
        assert _CRYPTO is not None and self._context is not None
        context = _ShaContext.from_buffer_copy(self._context)  # SHA256_Final ends a context
        out = ctypes.create_string_buffer(32)
        _CRYPTO.SHA256_Final(out, ctypes.byref(context))
        return Digest(self.algorithm, out.raw.hex())


class OneShotHash:
    """Any hashlib algorithm, for bytes that all arrive in one request."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())
