"""Every error a client can see, in one tree (and only here: tests/codebase/test_errors.py
checks it).

    RegistryError                      base: a code, an HTTP status, a message, optional detail
    ├── DistributionError              /v2: the OCI distribution-spec codes
    │   ├── BlobUnknown                404 BLOB_UNKNOWN
    │   ├── BlobUploadInvalid          400 BLOB_UPLOAD_INVALID
    │   ├── BlobUploadUnknown          404 BLOB_UPLOAD_UNKNOWN
    │   ├── DigestInvalid              400 DIGEST_INVALID
    │   ├── ManifestBlobUnknown        400 MANIFEST_BLOB_UNKNOWN
    │   ├── ManifestInvalid            400 MANIFEST_INVALID
    │   ├── ManifestUnknown            404 MANIFEST_UNKNOWN
    │   ├── NameInvalid                400 NAME_INVALID
    │   ├── NameUnknown                404 NAME_UNKNOWN
    │   ├── SizeInvalid                400 SIZE_INVALID
    │   ├── TagInvalid                 400 TAG_INVALID
    │   ├── RangeInvalid               416 BLOB_UPLOAD_INVALID: a chunk not where the upload ends
    │   ├── RangeNotSatisfiable        416 BLOB_UNKNOWN: a blob `Range` outside the blob
    │   ├── PaginationInvalid          400 PAGINATION_NUMBER_INVALID
    │   ├── Unauthorized               401 UNAUTHORIZED
    │   │   └── AuthenticationRequired     the same, naming the scope to ask a token for
    │   ├── Denied                     403 DENIED
    │   │   ├── QuotaExceeded              a push above the registry's storage quota
    │   │   └── ImmutableTag               moving or deleting a tag an immutable rule covers
    │   ├── Unsupported                400 UNSUPPORTED
    │   ├── TooLarge                   413 SIZE_INVALID
    │   ├── TooManyAttempts            429 TOOMANYREQUESTS: sign-ins throttled
    │   ├── EndpointUnknown            404 UNSUPPORTED: no such route
    │   └── MethodNotAllowed           405 UNSUPPORTED: the route exists, the method does not
    ├── ManagementError                /api/v1 and the console: the codes of SPEC §5
    │   ├── InvalidArgument            400 INVALID_ARGUMENT
    │   │   └── AccountError               a user, group or token request that cannot be done
    │   ├── NotFound                   404 NOT_FOUND
    │   │   ├── AccountUnknown             no such user, group or token
    │   │   └── RegistryNotFound           no such registry
    │   ├── AccountExists              409 ALREADY_EXISTS
    │   ├── RegistryExists             409 REGISTRY_EXISTS
    │   ├── RegistryNotEmpty           409 REGISTRY_NOT_EMPTY
    │   ├── RegistryDeleting           409 REGISTRY_DELETING
    │   ├── PlanApplied                409 PLAN_ALREADY_APPLIED: a retention plan runs once
    │   ├── Unauthenticated            401 UNAUTHENTICATED
    │   └── PermissionDenied           403 PERMISSION_DENIED
    │       └── CsrfFailed                 a change without the session's CSRF token
    ├── TokenError                     /auth/token (the Docker token service, OAuth2 errors)
    │   ├── ScopeInvalid               400 SCOPE_INVALID
    │   ├── GrantInvalid               400 UNSUPPORTED: a request that cannot be served
    │   ├── GrantRefused               401 UNAUTHORIZED: a grant that no longer works
    │   └── TokenRequestTooLarge       413 SIZE_INVALID
    ├── StorageFailure                 either API: the blob store failed, nothing was stored
        ├── StorageFailed              500 UNKNOWN
        ├── StorageFull                507 UNKNOWN
        └── StorageUnavailable         503 UNAVAILABLE, with `retry_after`
    └── DatabaseFailure                either API: the database failed, nothing changed
        ├── DatabaseFailed             500 UNKNOWN
        └── DatabaseUnavailable        503 UNAVAILABLE, with `retry_after`

The packages below HTTP (blobstore, manifests, catalog, auth, content) raise these and know
nothing of HTTP: data a client needs besides the message (a retry delay, an upload's range, a
blob's size) travels as fields, and each API's renderer (`v2/common.py`, `api/common.py`) turns
the error into its envelope and headers. The management API renders the distribution errors it
shares with /v2 under its own code names (`api/common.py`). Code and status belong to the
class, never to an instance. Each message says what was wrong and, where it helps, what to do.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    """Base of every error a client can see. Subclasses fix `code` and `status`."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    #: Seconds after which a retry may succeed, for the errors that say so (`Retry-After`).
    retry_after: int | None = None

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        """The distribution spec's error body (the management API has its own envelope)."""
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


# -- /v2: the OCI distribution spec ---------------------------------------------------------


class DistributionError(RegistryError):
    """An error of the OCI distribution spec, as /v2 reports it."""


class BlobUnknown(DistributionError):
    code, status = "BLOB_UNKNOWN", 404


class BlobUploadInvalid(DistributionError):
    code, status = "BLOB_UPLOAD_INVALID", 400


class BlobUploadUnknown(DistributionError):
    code, status = "BLOB_UPLOAD_UNKNOWN", 404


class DigestInvalid(DistributionError):
    code, status = "DIGEST_INVALID", 400


class ManifestBlobUnknown(DistributionError):
    code, status = "MANIFEST_BLOB_UNKNOWN", 400


class ManifestInvalid(DistributionError):
    code, status = "MANIFEST_INVALID", 400


class ManifestUnknown(DistributionError):
    code, status = "MANIFEST_UNKNOWN", 404


class NameInvalid(DistributionError):
    code, status = "NAME_INVALID", 400


class NameUnknown(DistributionError):
    code, status = "NAME_UNKNOWN", 404


class SizeInvalid(DistributionError):
    code, status = "SIZE_INVALID", 400


class TagInvalid(DistributionError):
    code, status = "TAG_INVALID", 400


class RangeInvalid(DistributionError):
    """A chunk that does not start where upload `upload_id` of `repository` ends. The client
    resumes from `received` bytes (the HTTP layer answers with the upload's `Range`); None when
    another request is writing and the end is not known yet."""

    code, status = "BLOB_UPLOAD_INVALID", 416

    def __init__(
        self,
        message: str,
        *,
        repository: str,
        upload_id: str,
        received: int | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.repository = repository
        self.upload_id = upload_id
        self.received = received


class RangeNotSatisfiable(DistributionError):
    """A blob GET whose `Range` lies outside the blob's `size` bytes."""

    code, status = "BLOB_UNKNOWN", 416

    def __init__(self, message: str, *, size: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.size = size


class PaginationInvalid(DistributionError):
    code, status = "PAGINATION_NUMBER_INVALID", 400


class Unauthorized(DistributionError):
    code, status = "UNAUTHORIZED", 401


class AuthenticationRequired(Unauthorized):
    """401: the caller must (re-)authenticate for `scope`; the HTTP layer adds the challenge
    (`error` is the challenge's `error=`, such as `insufficient_scope`)."""

    def __init__(self, message: str, scope: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope
        self.error = error


class Denied(DistributionError):
    code, status = "DENIED", 403


class QuotaExceeded(Denied):
    """A manifest PUT that would take a registry above its quota (403 DENIED, as docker shows
    DENIED messages to the user word for word)."""


class ImmutableTag(Denied):
    """A push that would move an immutable tag, or a deletion by someone who may not."""


class Unsupported(DistributionError):
    code, status = "UNSUPPORTED", 400


class TooLarge(DistributionError):
    code, status = "SIZE_INVALID", 413


class TooManyAttempts(DistributionError):
    """Sign-ins refused for `retry_after` seconds. The OCI code (distribution-spec
    `TOOMANYREQUESTS`), so that docker shows the message with its wait instead of `unknown:`;
    the management API names it `TOO_MANY_REQUESTS`."""

    code, status = "TOOMANYREQUESTS", 429

    def __init__(self, message: str, *, retry_after: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class EndpointUnknown(DistributionError):
    """No route answers this path (the management API says NOT_FOUND)."""

    code, status = "UNSUPPORTED", 404


class MethodNotAllowed(DistributionError):
    """The path exists, not with this method (the management API says METHOD_NOT_ALLOWED)."""

    code, status = "UNSUPPORTED", 405


# -- /api/v1 and the console: the management API -------------------------------------------


class ManagementError(RegistryError):
    """An error with one of the management API's own codes (SPEC §5)."""


class InvalidArgument(ManagementError):
    code, status = "INVALID_ARGUMENT", 400


class AccountError(InvalidArgument):
    """A user, group, membership or token change that cannot be made as asked."""


class NotFound(ManagementError):
    code, status = "NOT_FOUND", 404


class AccountUnknown(NotFound):
    """No such user, group or token."""


class RegistryNotFound(NotFound):
    """No such registry (or one the caller may not see)."""


class AccountExists(ManagementError):
    code, status = "ALREADY_EXISTS", 409


class RegistryExists(ManagementError):
    code, status = "REGISTRY_EXISTS", 409


class RegistryNotEmpty(ManagementError):
    code, status = "REGISTRY_NOT_EMPTY", 409


class RegistryDeleting(ManagementError):
    code, status = "REGISTRY_DELETING", 409


class PlanApplied(ManagementError):
    """A retention plan that was applied (or is being applied) already: a plan runs once."""

    code, status = "PLAN_ALREADY_APPLIED", 409


class Unauthenticated(ManagementError):
    code, status = "UNAUTHENTICATED", 401


class PermissionDenied(ManagementError):
    code, status = "PERMISSION_DENIED", 403


class CsrfFailed(PermissionDenied):
    """A console change without the CSRF token of its session."""


# -- /auth/token: the Docker token service -------------------------------------------------


class TokenError(RegistryError):
    """A token request that cannot be served; `detail` carries RFC 6749's `error` name."""


class ScopeInvalid(TokenError):
    code, status = "SCOPE_INVALID", 400


class GrantInvalid(TokenError):
    code, status = "UNSUPPORTED", 400

    def __init__(self, message: str, oauth_error: str) -> None:
        super().__init__(message, detail={"error": oauth_error})


class GrantRefused(GrantInvalid):
    """A grant that no longer works; coded UNAUTHORIZED, as docker prints the code's name."""

    code, status = "UNAUTHORIZED", 401


class TokenRequestTooLarge(GrantInvalid):
    code, status = "SIZE_INVALID", 413


# -- either API: the blob store ------------------------------------------------------------


class StorageFailure(RegistryError):
    """The blob store failed; nothing half-written became visible."""


class StorageFailed(StorageFailure):
    """The blob store failed (an I/O error)."""

    code, status = "UNKNOWN", 500


class StorageFull(StorageFailure):
    """The blob store has no space left; a retry succeeds once space is freed."""

    code, status = "UNKNOWN", 507


class StorageUnavailable(StorageFailure):
    """The blob store is unreachable or throttling; a retry may succeed after `retry_after`
    seconds."""

    code, status = "UNAVAILABLE", 503

    def __init__(self, message: str, *, retry_after: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class DatabaseFailure(RegistryError):
    """The metadata database failed; the transaction rolled back, so nothing changed."""


class DatabaseUnavailable(DatabaseFailure):
    """The database is unreachable or restarting (a failover, a restart); a retry may succeed
    after `retry_after` seconds."""

    code, status = "UNAVAILABLE", 503

    def __init__(self, message: str, *, retry_after: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class DatabaseFailed(DatabaseFailure):
    """The database refused a statement for a reason other than being away (a bug, most
    likely): nothing was written."""

    code, status = "UNKNOWN", 500
