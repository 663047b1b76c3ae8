"""The suite's HTTP client: URLs of the distribution API, authentication and clean-up.

Tests speak plain HTTP through httpx so that every status code and header is visible to them;
this module only removes the repetition (building URLs, following Location headers that may be
relative or absolute, getting a token, deleting what a test pushed).
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Generator, Iterable
from typing import Any

import httpx

from ociregistry.conformance.content import OCTET_STREAM, Blob, Image, Manifest
from ociregistry.conformance.settings import Settings

USER_AGENT = "ociregistry-conformance/0.1"

_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_REPOSITORY_PATH = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags|referrers)(?:/|$)")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        match.group(1).lower(): match.group(2) if match.group(2) is not None else match.group(3)
        for match in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


def _basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class RegistryAuth(httpx.Auth):
    """Basic credentials, upgraded to a Bearer token when the registry challenges for one.

    This is the docker/distribution token flow: a 401 with `WWW-Authenticate: Bearer realm=…,
    service=…,scope=…` means "get a token from realm for that scope (with your credentials, if
    any) and try again". Tokens are kept per repository and access kind so that most requests
    go out with a valid token and need no second round trip.
    """

    requires_response_body = True

    def __init__(
        self, username: str | None, password: str | None, extra_scope: str | None = None
    ) -> None:
        self._basic = _basic_header(username, password or "") if username else None
        self._extra_scope = extra_scope
        self._tokens: dict[tuple[str, str, str], str] = {}

    @staticmethod
    def _key(request: httpx.Request) -> tuple[str, str, str]:
        match = _REPOSITORY_PATH.match(request.url.path)
        repository = match.group(1) if match else request.url.path
        access = "pull" if request.method in ("GET", "HEAD") else "push"
        return repository, access, request.url.params.get("from", "")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = self._key(request)
        if key in self._tokens:
            request.headers["Authorization"] = f"Bearer {self._tokens[key]}"
        elif self._basic:
            request.headers["Authorization"] = self._basic
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme != "bearer" or "realm" not in params:
            return
        token = yield from self._fetch_token(params)
        if token:
            self._tokens[key] = token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def _fetch_token(
        self, params: dict[str, str]
    ) -> Generator[httpx.Request, httpx.Response, str | None]:
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        scopes = [*params.get("scope", "").split(), *(self._extra_scope or "").split()]
        query.extend(("scope", scope) for scope in dict.fromkeys(scopes))
        headers = {"User-Agent": USER_AGENT}
        if self._basic:
            headers["Authorization"] = self._basic
        url = httpx.URL(params["realm"]).copy_merge_params(query)
        response = yield httpx.Request("GET", url, headers=headers)
        if response.status_code != 200:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        return body.get("token") or body.get("access_token")


def _redact(name: str, value: str) -> str:
    return "<redacted>" if name.lower() in ("authorization", "set-cookie", "cookie") else value


def _log_request(request: httpx.Request) -> None:
    print(f"--> {request.method} {request.url}", file=sys.stderr)
    for name, value in request.headers.items():
        print(f"    {name}: {_redact(name, value)}", file=sys.stderr)


def _log_response(response: httpx.Response) -> None:
    response.read()
    print(f"<-- {response.status_code} {response.request.method} {response.url}", file=sys.stderr)
    for name, value in response.headers.items():
        print(f"    {name}: {_redact(name, value)}", file=sys.stderr)
    if response.content:
        print(f"    {response.content[:2000]!r}", file=sys.stderr)


class RegistryClient:
    """The registry under test, addressed by repository name (default: the namespace)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        hooks: dict[str, list[Any]] = (
            {"request": [_log_request], "response": [_log_response]} if settings.debug else {}
        )
        self.http = httpx.Client(
            base_url=settings.root_url,
            auth=RegistryAuth(settings.username, settings.password, settings.auth_scope),
            headers={"User-Agent": USER_AGENT},
            timeout=httpx.Timeout(60.0, connect=10.0),
            follow_redirects=True,  # blob GETs MAY redirect to storage (spec: 307)
            event_hooks=hooks,
        )

    def close(self) -> None:
        self.http.close()

    # URLs -------------------------------------------------------------------------------

    def repo(self, name: str | None = None) -> str:
        return f"/v2/{name or self.namespace}"

    def blob_url(self, digest: str, name: str | None = None) -> str:
        return f"{self.repo(name)}/blobs/{digest}"

    def manifest_url(self, reference: str, name: str | None = None) -> str:
        return f"{self.repo(name)}/manifests/{reference}"

    def uploads_url(self, name: str | None = None) -> str:
        return f"{self.repo(name)}/blobs/uploads/"

    def tags_url(self, name: str | None = None) -> str:
        return f"{self.repo(name)}/tags/list"

    def referrers_url(self, digest: str, name: str | None = None) -> str:
        return f"{self.repo(name)}/referrers/{digest}"

    def absolute(self, location: str) -> httpx.URL:
        """A Location header (absolute or relative, RFC 7231) as an absolute URL."""
        return httpx.URL(self.settings.root_url + "/").join(location)

    def location(self, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("Location", "")
        assert location, f"response has no Location header\n{describe(response)}"
        return self.absolute(location)

    @staticmethod
    def with_params(url: str | httpx.URL, **params: str) -> httpx.URL:
        """Add query parameters, keeping those already in an upload URL (they MAY be critical)."""
        return httpx.URL(url).copy_merge_params(params)

    # Requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        if params:
            url = self.with_params(url, **params)
        return self.http.request(method, url, content=content, headers=headers)

    def get(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def delete(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def start_upload(self, name: str | None = None, **params: str) -> httpx.Response:
        """POST …/blobs/uploads/ with an empty body (the chunked-upload form of the spec)."""
        return self.request(
            "POST", self.uploads_url(name), headers={"Content-Length": "0"}, params=params
        )

    def patch_chunk(
        self, location: str | httpx.URL, chunk: bytes, start: int | None = None
    ) -> httpx.Response:
        """PATCH one chunk; with `start`, as a Content-Range chunk, else streamed (no range)."""
        headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(len(chunk))}
        if start is not None:
            headers["Content-Range"] = f"{start}-{start + len(chunk) - 1}"
        return self.request("PATCH", location, content=chunk, headers=headers)

    def finish_upload(
        self,
        location: str | httpx.URL,
        digest: str,
        chunk: bytes = b"",
        start: int | None = None,
    ) -> httpx.Response:
        """The closing PUT …?digest=, optionally carrying the last chunk."""
        headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(len(chunk))}
        if chunk and start is not None:
            headers["Content-Range"] = f"{start}-{start + len(chunk) - 1}"
        return self.request(
            "PUT", location, content=chunk, headers=headers, params={"digest": digest}
        )

    def put_blob(self, blob: Blob, name: str | None = None) -> httpx.Response:
        """POST then PUT: the one upload every registry must support. Returns the PUT response."""
        started = self.start_upload(name)
        assert started.status_code == 202, f"upload did not start\n{describe(started)}"
        return self.finish_upload(self.location(started), blob.digest, blob.data)

    def put_manifest(
        self, manifest: Manifest, reference: str | None = None, name: str | None = None
    ) -> httpx.Response:
        return self.request(
            "PUT",
            self.manifest_url(reference or manifest.digest, name),
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )

    def get_manifest(
        self, reference: str, name: str | None = None, accept: Iterable[str] = ()
    ) -> httpx.Response:
        headers = {"Accept": ", ".join(accept)} if accept else None
        return self.get(self.manifest_url(reference, name), headers=headers)

    def tags(self, name: str | None = None, **params: str) -> httpx.Response:
        return self.get(self.tags_url(name), params=params or None)


class Tracker:
    """Pushes content for one test (or module) and deletes it all again afterwards.

    Manifests go first, newest first (referrers before their subject, an index before its
    children), then blobs, so that registries which refuse to delete referenced content still
    end up clean. Deletion is best effort: a registry MAY disable it (405) or already have
    collected the content (404); only a server error is reported. Upload sessions a test left
    open are cancelled first.
    """

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._manifests: list[tuple[str, str | None]] = []
        self._blobs: list[tuple[str, str | None]] = []
        self._uploads: list[httpx.URL] = []

    def track_upload(self, response: httpx.Response) -> None:
        """Cancel this upload session at the end if it is still open (no half uploads left)."""
        if response.headers.get("Location"):
            self._uploads.append(self.client.location(response))

    def start_upload(self, name: str | None = None, **params: str) -> httpx.Response:
        response = self.client.start_upload(name, **params)
        self.track_upload(response)
        return response

    def track_manifest(self, digest: str, name: str | None = None) -> None:
        self._manifests.append((digest, name))

    def track_blob(self, digest: str, name: str | None = None) -> None:
        self._blobs.append((digest, name))

    def push_blob(self, blob: Blob, name: str | None = None) -> httpx.Response:
        response = self.client.put_blob(blob, name)
        assert response.status_code == 201, f"could not push blob\n{describe(response)}"
        self.track_blob(blob.digest, name)
        return response

    def push_manifest(
        self, manifest: Manifest, reference: str | None = None, name: str | None = None
    ) -> httpx.Response:
        response = self.client.put_manifest(manifest, reference, name)
        assert response.status_code == 201, f"could not push manifest\n{describe(response)}"
        self.track_manifest(manifest.digest, name)
        return response

    def push_image(
        self, image: Image, reference: str | None = None, name: str | None = None
    ) -> httpx.Response:
        for blob in image.blobs:
            self.push_blob(blob, name)
        return self.push_manifest(image.manifest, reference, name)

    def clean(self) -> None:
        client = self.client
        failures = []
        targets: list[str | httpx.URL] = list(self._uploads)
        targets += [client.manifest_url(d, n) for d, n in reversed(self._manifests)]
        targets += [client.blob_url(d, n) for d, n in reversed(self._blobs)]
        for url in dict.fromkeys(targets):
            try:
                response = client.delete(url)
            except httpx.HTTPError as error:
                failures.append(f"DELETE {url}: {error!r}")
                continue
            if response.status_code >= 500:
                failures.append(describe(response))
        self._manifests.clear()
        self._blobs.clear()
        self._uploads.clear()
        assert not failures, "clean-up failed with server errors:\n" + "\n".join(failures)


def describe(response: httpx.Response) -> str:
    """The exchange in a few lines, for assertion messages: what was sent and what came back."""
    request = response.request
    sent = {
        name: request.headers[name]
        for name in ("Content-Type", "Content-Length", "Content-Range", "Accept", "Range")
        if name in request.headers
    }
    lines = [f"{request.method} {request.url} {sent or ''}".rstrip()]
    lines.append(f"-> {response.status_code} {response.reason_phrase}")
    for name, value in response.headers.items():
        lines.append(f"   {name}: {_redact(name, value)}")
    if request.method != "HEAD":
        body = response.content
        if body:
            text = body[:800].decode("utf-8", "replace")
            lines.append(f"   body: {text}{' …' if len(body) > 800 else ''}")
    return "\n".join(lines)
