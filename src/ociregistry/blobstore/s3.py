"""Blobs in S3-compatible object storage (AWS S3, Ceph RADOS Gateway, MinIO).

Why it is shaped this way:

- The client is `aiobotocore`: measured against a real gateway it is the one async client that
  drives a multipart upload across processes (we keep the upload id and part ETags in the
  session row), copies parts server-side and aborts by id. `obstore` serves small GETs faster
  but has no API for any of that.
- A chunked upload is one S3 multipart upload under `uploads/<uuid>/multipart`. A chunk of any
  length streams into one or more S3 parts (each at least 5 MiB except the very last, buffered
  at most about `PART_SIZE + MIN_PART_SIZE` at a time), so memory stays bounded however large
  a PATCH is (the same bound as `put_stream`). Finishing completes the multipart upload and
  copies it server-side to the blob's key: the registry reads back no byte, and there is
  exactly one server-side copy (on Ceph, a copy within a pool shares the data instead of
  copying it).
- `put_stream` (monolithic uploads) goes straight to the final key: one PutObject when the
  stream is short, else a multipart upload at the final key, parts sent while the next one
  fills. Memory per upload: the chunks of the part being cut (up to 13 MiB plus one incoming
  chunk), the part being built and the part on the wire, plus what the client library keeps:
  46 MiB at peak measured for a 96 MiB stream, whatever the blob's size (parts, and so this
  bound, grow by 8 MiB per thousand parts past 8 GiB).
- Retries (throttling such as 503 SlowDown, 5xx, timeouts, connection resets) are botocore's
  "standard" mode: exponential backoff with full jitter, `MAX_ATTEMPTS` attempts. Past them
  every failure becomes `StorageUnavailable`, which the client sees as 503 `UNAVAILABLE`
  with `Retry-After`.
- Credentials come only from the standard AWS chain (environment, shared files, instance
  roles); custom endpoints use path-style addressing; presigned URLs are SigV4.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ociregistry.blobstore.driver import (
    FileInfo,
    PathNotFound,
    PendingUpload,
    StorageDriver,
    StorageError,
    StorageUnavailable,
    UploadState,
)

if TYPE_CHECKING:
    from ociregistry.config import Settings

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's smallest part, except the last
PART_SIZE = 8 * MIB  # the part size we cut streams into (grows past 1,000 parts)
MAX_PARTS = 10_000  # S3's most parts per multipart upload
COPY_OBJECT_LIMIT = 5 * 1024 * MIB  # CopyObject's largest source; above it, UploadPartCopy
COPY_PART_SIZE = 1024 * MIB
DELETE_BATCH = 1000  # DeleteObjects' most keys per request
READ_CHUNK = 1 * MIB
MAX_ATTEMPTS = 5  # botocore standard retries: about 15 s of backoff at most
RETRY_AFTER_SECONDS = 10
MULTIPART_NAME = "multipart"  # the key, under an upload's folder, its multipart upload writes
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
GONE_UPLOAD_CODES = frozenset({"404", "NoSuchUpload", "NoSuchKey"})


@dataclass(frozen=True)
class S3Location:
    """Where the registry's objects live: `s3://BUCKET[/PREFIX]`."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def _part_size(number: int) -> int:
    """The size we cut S3 part `number` to: 8 MiB for the first thousand parts, then 16 MiB,
    and so on, so 10,000 parts hold about 400 GiB while small blobs buffer little."""
    return PART_SIZE * (1 + (number - 1) // 1000)


async def _cut(chunks: AsyncIterable[bytes], first: int) -> AsyncIterator[tuple[int, bytes]]:
    """Cut a stream of any length into S3 parts numbered from `first`, each at least
    `MIN_PART_SIZE` except the last: a part is cut only when what stays behind is itself big
    enough to be a part. Yields nothing for an empty stream."""
    pieces: deque[bytes] = deque()  # the stream's chunks as they came: no growing buffer
    buffered = 0
    number = first
    async for chunk in chunks:
        if not chunk:
            continue
        pieces.append(bytes(chunk))
        buffered += len(chunk)
        while buffered >= _part_size(number) + MIN_PART_SIZE:
            size = _part_size(number)
            taken: list[bytes] = []
            need = size
            while need:
                piece = pieces.popleft()
                if len(piece) > need:
                    pieces.appendleft(piece[need:])
                    piece = piece[:need]
                taken.append(piece)
                need -= len(piece)
            part = b"".join(taken)  # the one copy of the part's bytes
            del taken
            buffered -= size
            yield number, part
            number += 1
    if buffered:
        yield number, b"".join(pieces)


def _code(error: StorageError) -> str | None:
    """S3's error code behind a StorageError, if S3 gave one."""
    cause = error.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return None


class S3Driver(StorageDriver):
    """Objects under `PREFIX/` in one bucket; one aiobotocore client per process, opened on
    first use (so it belongs to the event loop that uses it)."""

    min_part_size = MIN_PART_SIZE
    max_parts = MAX_PARTS

    def __init__(
        self,
        location: S3Location,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        redirect: bool = True,
        redirect_ttl_seconds: int = 1200,
        max_attempts: int = MAX_ATTEMPTS,
        connect_timeout: float = 5.0,
    ) -> None:
        self.location = location
        self.endpoint_url = endpoint_url or None
        self.region = region
        self.redirect = redirect
        self.redirect_ttl_seconds = redirect_ttl_seconds
        self.max_attempts = max_attempts
        self._root = f"{location.prefix.strip('/')}/" if location.prefix.strip("/") else ""
        self._config = AioConfig(
            signature_version="s3v4",
            region_name=region,
            # Path-style for custom endpoints (Ceph, MinIO: no wildcard DNS for buckets).
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=60,
            max_pool_connections=128,
            # Checksums only where S3 requires them: the registry checks every blob's digest
            # itself, so a CRC over each part would only cost CPU (and S3-compatible stores
            # differ in which flexible checksums they accept).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = None
        self._client_context: Any = None
        self._opening = asyncio.Lock()
        #: S3 operations sent by this process, by name (tests count them).
        self.operations: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> S3Driver:
        """The driver `storage = s3://BUCKET[/PREFIX]` and the `s3_*` settings describe."""
        location = settings.s3_bucket_and_prefix
        if location is None:
            raise ValueError(f"storage {settings.storage!r} is not s3://BUCKET[/PREFIX]")
        return cls(
            S3Location(*location),
            endpoint_url=settings.resolved_s3_endpoint_url,
            region=settings.resolved_s3_region,
            redirect=settings.s3_redirect,
            redirect_ttl_seconds=settings.s3_redirect_ttl_seconds,
            **options,
        )

    # --- the client ----------------------------------------------------------------------

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    context = get_session().create_client(
                        "s3", endpoint_url=self.endpoint_url, config=self._config
                    )
                    client = await context.__aenter__()
                    client.meta.events.register("before-call.s3", self._count)
                    self._client_context, self._client = context, client
        return self._client

    def _count(self, model: Any, **_: Any) -> None:
        self.operations[model.name] += 1

    async def close(self) -> None:
        if self._client_context is not None:
            context, self._client, self._client_context = self._client_context, None, None
            await context.__aexit__(None, None, None)

    def _key(self, path: str) -> str:
        return self._root + path

    def _path(self, key: str) -> str:
        return key[len(self._root) :]

    @contextlib.contextmanager
    def _errors(self, path: str, *, not_found: bool = True) -> Iterator[None]:
        """S3's failures in the driver's words: PathNotFound, StorageUnavailable (past the
        retries: the client may try again later) or StorageError. The message (which the
        client sees) names the S3 operation and S3's answer only; the log line also names the
        endpoint, bucket and key."""
        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if not_found and code in NOT_FOUND_CODES:
                raise PathNotFound(path) from None
            message = f"S3 {error.operation_name} answered {status} {code}"
            log.warning("%s (%s, %s): %s", message, self.location, path, error)
            if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout"):
                raise StorageUnavailable(message, RETRY_AFTER_SECONDS) from error
            raise StorageError(message) from error
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as error:
            log.warning(
                "S3 at %s failed on %s in %s: %s",
                self.endpoint_url or "AWS",
                path,
                self.location,
                error,
            )
            raise StorageUnavailable(
                f"S3 did not answer ({type(error).__name__}, after {self.max_attempts} attempts)",
                RETRY_AFTER_SECONDS,
            ) from error

    # --- small objects, reads, listing, deletion -----------------------------------------

    async def get_content(self, path: str) -> bytes:
        s3 = await self._s3()
        with self._errors(path):
            response = await s3.get_object(Bucket=self.location.bucket, Key=self._key(path))
            async with response["Body"] as body:
                return await body.read()

    async def put_content(self, path: str, data: bytes) -> None:
        s3 = await self._s3()
        with self._errors(path, not_found=False):
            await s3.put_object(Bucket=self.location.bucket, Key=self._key(path), Body=data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if length == 0:
            if await self.stat(path) is None:
                raise PathNotFound(path)
            return
        s3 = await self._s3()
        request: dict[str, Any] = {"Bucket": self.location.bucket, "Key": self._key(path)}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            request["Range"] = f"bytes={offset}-{end}"
        with self._errors(path):
            try:
                response = await s3.get_object(**request)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "InvalidRange":
                    raise
                if await self.stat(path) is None:  # a range on a missing object: 404 first
                    raise PathNotFound(path) from None
                return  # offset at or past the end
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(READ_CHUNK):
                    yield chunk

    async def stat(self, path: str) -> FileInfo | None:
        s3 = await self._s3()
        try:
            with self._errors(path):
                head = await s3.head_object(Bucket=self.location.bucket, Key=self._key(path))
        except PathNotFound:
            return None
        return FileInfo(path, int(head["ContentLength"]), head["LastModified"].timestamp())

    async def walk(self, prefix: str) -> AsyncIterator[FileInfo]:
        s3 = await self._s3()
        key = self._key(prefix)
        paginator = s3.get_paginator("list_objects_v2")
        with self._errors(prefix, not_found=False):
            async for page in paginator.paginate(Bucket=self.location.bucket, Prefix=key):
                for item in page.get("Contents", []):
                    name = item["Key"]
                    if prefix and name != key and not name.startswith(key + "/"):
                        continue
                    yield FileInfo(
                        self._path(name), int(item["Size"]), item["LastModified"].timestamp()
                    )

    async def delete(self, path: str) -> None:
        """The object at `path`, every object under `path/`, and multipart uploads begun
        there (an upload's folder)."""
        keys = [self._key(path)]
        keys += [self._key(info.path) async for info in self.walk(path) if info.path != path]
        await self._delete_keys(keys, path)
        async for pending in self.pending_uploads(path):
            await self.abort(pending.state)

    async def delete_many(self, paths: list[str]) -> None:
        """Delete the objects at `paths` with batched DeleteObjects, a thousand per request,
        and no listing: what garbage collection uses. Unlike `delete`, not what is under a
        path (blobs have nothing under them)."""
        await self._delete_keys([self._key(path) for path in paths], "many")

    async def _delete_keys(self, keys: list[str], what: str) -> None:
        s3 = await self._s3()
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
            with self._errors(what, not_found=False):
                answer = await s3.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            failed = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                raise StorageError(
                    f"S3 DeleteObjects in {self.location}: {len(failed)} failed, first "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}"
                )

    async def redirect_url(self, path: str, *, method: str = "GET") -> str | None:
        if not self.redirect:
            return None
        s3 = await self._s3()
        operation = {"GET": "get_object", "HEAD": "head_object"}[method]
        with self._errors(path, not_found=False):
            return await s3.generate_presigned_url(
                operation,
                Params={"Bucket": self.location.bucket, "Key": self._key(path)},
                ExpiresIn=self.redirect_ttl_seconds,
            )

    # --- streams and multipart uploads ---------------------------------------------------

    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        s3 = await self._s3()
        key = self._key(path)
        parts = _cut(chunks, 1)
        try:
            first = await anext(parts, None)
            second = await anext(parts, None) if first is not None else None
        except BaseException:
            await parts.aclose()
            raise
        if second is None:  # short: one atomic PutObject
            data = first[1] if first is not None else b""
            with self._errors(path, not_found=False):
                await s3.put_object(Bucket=self.location.bucket, Key=key, Body=data)
            return len(data)
        with self._errors(path, not_found=False):
            created = await s3.create_multipart_upload(Bucket=self.location.bucket, Key=key)
        state: UploadState = {"key": key, "upload_id": created["UploadId"], "parts": []}
        held = [first, second]  # handed on, not kept: memory stays at a few parts
        del first, second
        try:

            async def all_parts() -> AsyncIterator[tuple[int, bytes]]:
                while held:
                    yield held.pop(0)
                async for part in parts:
                    yield part

            uploaded = await self._upload_parts(state, 1, all_parts())
            await self._complete(state["key"], state["upload_id"], uploaded, path)
        except BaseException:
            with contextlib.suppress(StorageError):
                await asyncio.shield(self._abort(state))
            raise
        return sum(part[3] for part in uploaded)

    async def _upload_parts(
        self, state: UploadState, caller_part: int, parts: AsyncIterator[tuple[int, bytes]]
    ) -> list[list[Any]]:
        """Send parts as they are cut, one on the wire while the next one fills; returns
        `[caller_part, number, etag, size]` for each."""
        s3 = await self._s3()
        done: list[list[Any]] = []

        async def send(number: int, data: bytes) -> list[Any]:
            if number > MAX_PARTS:
                raise StorageError(f"S3 allows at most {MAX_PARTS} parts per upload")
            with self._errors(state["key"], not_found=False):
                answer = await s3.upload_part(
                    Bucket=self.location.bucket,
                    Key=state["key"],
                    UploadId=state["upload_id"],
                    PartNumber=number,
                    Body=data,
                )
            return [caller_part, number, answer["ETag"], len(data)]

        in_flight: asyncio.Task[list[Any]] | None = None
        try:
            async for number, data in parts:
                if in_flight is not None:
                    done.append(await in_flight)
                in_flight = asyncio.ensure_future(send(number, data))
            if in_flight is not None:
                done.append(await in_flight)
                in_flight = None
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
                with contextlib.suppress(BaseException):
                    await in_flight
            await parts.aclose()  # type: ignore[attr-defined]
        return done

    async def begin_upload(self, path: str) -> UploadState:
        s3 = await self._s3()
        key = self._key(f"{path}/{MULTIPART_NAME}")
        with self._errors(path, not_found=False):
            created = await s3.create_multipart_upload(Bucket=self.location.bucket, Key=key)
        return {"key": key, "upload_id": created["UploadId"], "parts": []}

    async def write_part(
        self, state: UploadState, part_number: int, chunks: AsyncIterable[bytes]
    ) -> UploadState:
        kept = [part for part in state["parts"] if part[0] < part_number]
        if (kept and kept[-1][0] != part_number - 1) or (not kept and part_number != 1):
            raise ValueError(f"part {part_number} does not follow the parts written so far")
        first = kept[-1][1] + 1 if kept else 1
        written = await self._upload_parts(state, part_number, _cut(chunks, first))
        return {**state, "parts": kept + written}

    async def compose(self, state: UploadState, destination: str) -> None:
        s3 = await self._s3()
        key, upload_id, parts = state["key"], state["upload_id"], state["parts"]
        if not parts:  # an empty blob: S3 cannot complete an upload without parts
            await self.put_content(destination, b"")
            await self._abort(state)
            return
        size = sum(part[3] for part in parts)
        if await self._upload_exists(key, upload_id, destination):
            await self._complete(key, upload_id, parts, destination)
        else:
            # Completed by an earlier attempt whose copy then failed: the object is there.
            # Otherwise the upload was aborted (Ceph answers a retried completion with 500s
            # for a while, which botocore would retry for seconds: ask first).
            staged = await self.stat(self._path(key))
            if staged is None or staged.size != size:
                raise StorageError(f"the multipart upload of {destination} is gone (aborted)")
        await self._copy(key, self._key(destination), size, destination)
        with self._errors(destination, not_found=False):
            await s3.delete_object(Bucket=self.location.bucket, Key=key)

    async def _upload_exists(self, key: str, upload_id: str, path: str) -> bool:
        s3 = await self._s3()
        try:
            with self._errors(path, not_found=False):
                await s3.list_parts(
                    Bucket=self.location.bucket, Key=key, UploadId=upload_id, MaxParts=1
                )
        except StorageError as error:
            if _code(error) in GONE_UPLOAD_CODES:
                return False
            raise
        return True

    async def _complete(self, key: str, upload_id: str, parts: list[list[Any]], path: str) -> None:
        s3 = await self._s3()
        with self._errors(path, not_found=False):
            await s3.complete_multipart_upload(
                Bucket=self.location.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": part[1], "ETag": part[2]} for part in parts]
                },
            )

    async def _copy(self, source: str, destination: str, size: int, path: str) -> None:
        """One server-side copy: CopyObject up to 5 GiB, UploadPartCopy ranges above."""
        s3 = await self._s3()
        bucket = self.location.bucket
        with self._errors(path, not_found=False):
            if size <= COPY_OBJECT_LIMIT:
                await s3.copy_object(
                    Bucket=bucket, Key=destination, CopySource={"Bucket": bucket, "Key": source}
                )
                return
            created = await s3.create_multipart_upload(Bucket=bucket, Key=destination)
            upload_id = created["UploadId"]
            try:
                parts = []
                for number, start in enumerate(range(0, size, COPY_PART_SIZE), 1):
                    end = min(start + COPY_PART_SIZE, size) - 1
                    answer = await s3.upload_part_copy(
                        Bucket=bucket,
                        Key=destination,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": bucket, "Key": source},
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                    parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
                await s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=destination,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await s3.abort_multipart_upload(
                        Bucket=bucket, Key=destination, UploadId=upload_id
                    )
                raise

    async def abort(self, state: UploadState) -> None:
        await self._abort(state)

    async def _abort(self, state: UploadState) -> None:
        s3 = await self._s3()
        path = self._path(state["key"])
        try:
            with self._errors(path, not_found=False):
                await s3.abort_multipart_upload(
                    Bucket=self.location.bucket, Key=state["key"], UploadId=state["upload_id"]
                )
        except StorageError as error:
            if _code(error) not in GONE_UPLOAD_CODES:
                raise
        if state["key"].endswith("/" + MULTIPART_NAME):  # staging only, never a final key
            with self._errors(path, not_found=False):
                await s3.delete_object(Bucket=self.location.bucket, Key=state["key"])

    async def pending_uploads(self, prefix: str) -> AsyncIterator[PendingUpload]:
        s3 = await self._s3()
        key = self._key(prefix)
        paginator = s3.get_paginator("list_multipart_uploads")
        with self._errors(prefix, not_found=False):
            async for page in paginator.paginate(Bucket=self.location.bucket, Prefix=key):
                for upload in page.get("Uploads", []):
                    name = upload["Key"]
                    if prefix and name != key and not name.startswith(key + "/"):
                        continue
                    path = self._path(name)
                    path = path.removesuffix("/" + MULTIPART_NAME)
                    state = {"key": name, "upload_id": upload["UploadId"], "parts": []}
                    yield PendingUpload(path, upload["Initiated"].timestamp(), state)

    # --- start-up check ------------------------------------------------------------------

    async def check(self) -> None:
        """Reach the bucket once, so `serve` stops at start with one clear line (which
        setting, what S3 answered) instead of failing every request later."""
        endpoint = self.endpoint_url or "AWS"
        s3 = await self._s3()
        try:
            await s3.list_objects_v2(Bucket=self.location.bucket, Prefix=self._root, MaxKeys=1)
        except NoCredentialsError:
            raise StorageError(
                "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or a shared credentials file, or an instance role)"
            ) from None
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            answer = f"S3 answered {status} {code}".rstrip()
            if code == "NoSuchBucket":
                raise StorageError(
                    f"storage {self.location}: the bucket {self.location.bucket!r} does not "
                    f"exist at s3_endpoint_url {endpoint} ({answer})"
                ) from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") or (
                status == 403
            ):
                raise StorageError(
                    f"storage {self.location}: the credentials (AWS_ACCESS_KEY_ID) were "
                    f"refused by s3_endpoint_url {endpoint} ({answer})"
                ) from None
            raise StorageError(
                f"storage {self.location}: s3_endpoint_url {endpoint} refused ({answer})"
            ) from None
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as error:
            raise StorageError(
                f"storage {self.location}: s3_endpoint_url {endpoint} is unreachable ({error})"
            ) from None


def check_s3_storage(settings: Settings) -> None:
    """For `serve`: reach the configured bucket once with few retries, or raise StorageError
    with one line that names the setting and what S3 answered."""

    async def attempt() -> None:
        driver = S3Driver.from_settings(settings, max_attempts=2, connect_timeout=3.0)
        try:
            await driver.check()
        finally:
            await driver.close()

    asyncio.run(attempt())
