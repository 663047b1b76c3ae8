"""Every error the registry reports, in one tree.

    RegistryError                 an OCI distribution-spec error: code, HTTP status, message
    ├── BlobUnknown               404 BLOB_UNKNOWN
    ├── BlobUploadInvalid         400 BLOB_UPLOAD_INVALID
    ├── BlobUploadUnknown         404 BLOB_UPLOAD_UNKNOWN
    ├── DigestInvalid             400 DIGEST_INVALID
    ├── ManifestBlobUnknown       400 MANIFEST_BLOB_UNKNOWN
    ├── ManifestInvalid           400 MANIFEST_INVALID
    ├── ManifestUnknown           404 MANIFEST_UNKNOWN
    ├── NameInvalid               400 NAME_INVALID
    ├── NameUnknown               404 NAME_UNKNOWN
    ├── SizeInvalid               400 SIZE_INVALID
    ├── RangeInvalid              416 BLOB_UPLOAD_INVALID (with the upload's current range)
    ├── PaginationInvalid         400 PAGINATION_NUMBER_INVALID
    ├── Unauthorized              401 UNAUTHORIZED
    ├── Denied                    403 DENIED
    ├── Unsupported               400 UNSUPPORTED
    └── TooLarge                  413 SIZE_INVALID

The packages below HTTP (blobstore, manifests, catalog, auth) raise these; the HTTP layer only
renders them. Each message says what was wrong and, where it helps, what to do instead.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    """Base of every error a client can see. Subclasses fix `code` and `status`."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


class BlobUnknown(RegistryError):
    code, status = "BLOB_UNKNOWN", 404


class BlobUploadInvalid(RegistryError):
    code, status = "BLOB_UPLOAD_INVALID", 400


class BlobUploadUnknown(RegistryError):
    code, status = "BLOB_UPLOAD_UNKNOWN", 404


class DigestInvalid(RegistryError):
    code, status = "DIGEST_INVALID", 400


class ManifestBlobUnknown(RegistryError):
    code, status = "MANIFEST_BLOB_UNKNOWN", 400


class ManifestInvalid(RegistryError):
    code, status = "MANIFEST_INVALID", 400


class ManifestUnknown(RegistryError):
    code, status = "MANIFEST_UNKNOWN", 404


class NameInvalid(RegistryError):
    code, status = "NAME_INVALID", 400


class NameUnknown(RegistryError):
    code, status = "NAME_UNKNOWN", 404


class SizeInvalid(RegistryError):
    code, status = "SIZE_INVALID", 400


class RangeInvalid(RegistryError):
    """A chunk that does not start where the upload ends; the client resumes from `Range`."""

    code, status = "BLOB_UPLOAD_INVALID", 416


class PaginationInvalid(RegistryError):
    code, status = "PAGINATION_NUMBER_INVALID", 400


class Unauthorized(RegistryError):
    code, status = "UNAUTHORIZED", 401


class Denied(RegistryError):
    code, status = "DENIED", 403


class Unsupported(RegistryError):
    code, status = "UNSUPPORTED", 400


class TooLarge(RegistryError):
    code, status = "SIZE_INVALID", 413


class StorageFailed(RegistryError):
    """The blob store failed (an I/O error); nothing half-written became visible."""

    code, status = "UNKNOWN", 500


class StorageFull(RegistryError):
    """The blob store has no space left; a retry succeeds once space is freed."""

    code, status = "UNKNOWN", 507


class StorageUnavailable(RegistryError):
    """The blob store is unreachable or throttling; retry after `Retry-After` seconds."""

    code, status = "UNAVAILABLE", 503


class DatabaseUnavailable(RegistryError):
    """The database is unreachable or restarting (a failover, a restart); the transaction was
    rolled back, so nothing became visible; retry after `Retry-After` seconds."""

    code, status = "UNAVAILABLE", 503


class DatabaseFailed(RegistryError):
    """The database refused a statement for a reason other than being away (a bug, most
    likely): nothing was written."""

    code, status = "UNKNOWN", 500
