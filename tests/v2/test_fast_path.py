"""The hot routes' fast path (v2/fastpath.py) answers exactly as the ordinary stack does.

`GET /v2/` and manifest `GET`/`HEAD` skip Starlette's router and the middlewares behind the
access middleware. Every request below goes to the app twice: once as served, once through the
same app built without the fast path; status, headers (but the request id and the date) and
body must be the same, errors included (their request id is the response's own). And the
served app must not have walked the router for them, or the fast path is not taken at all.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from ociregistry.v2.fastpath import HotRoutes
from support.inprocess import ADMIN_PASSWORD, InProcessRegistry, push_image
from support.oci import digest_of, make_image

REPO = "fast-public/app"
PRIVATE = "fast-private/app"


class _RouterProbe:
    """Stands in front of the app's router and notes each path that reaches it."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.router(scope, receive, send)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    running = InProcessRegistry(tmp_path_factory.mktemp("fastpath") / "data")
    yield running
    running.close()


@pytest.fixture(scope="module")
def image(registry: InProcessRegistry) -> Any:
    async def seed() -> Any:
        client = registry.client
        for name, public in (("fast-public", True), ("fast-private", False)):
            created = await client.post("/api/v1/registries", json={"name": name, "public": public})
            assert created.status_code == 201, created.text
        pushed = make_image("fast path")
        await push_image(client, REPO, pushed, "v1")
        await push_image(client, PRIVATE, pushed, "v1")
        return pushed

    return registry.run(seed())


def _without_fast_path(registry: InProcessRegistry) -> Any:
    """The same app, services and all, with its middleware stack built without `HotRoutes`."""
    app = registry.app
    kept = app.user_middleware
    app.user_middleware = [m for m in kept if m.cls is not HotRoutes]
    try:
        stack = app.build_middleware_stack()
    finally:
        app.user_middleware = kept

    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app
        await stack(scope, receive, send)

    return plain


def _comparable(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    request_id = response.headers["x-request-id"]
    headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
    body: Any = response.content
    if response.headers.get("content-type") == "application/json" and body:
        text = response.text.replace(request_id, "<request id>")
        body = json.loads(text)
        assert "<request id>" in text or response.status_code < 400, text
    return response.status_code, headers, body


def _requests(token: str, anonymous: str, digest: str) -> list[tuple[str, str, dict[str, str]]]:
    user = {"Authorization": f"Bearer {token}"}
    stranger = {"Authorization": f"Bearer {anonymous}"}
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    basic = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    return [
        ("GET", "/v2/", {}),
        ("GET", "/v2/", user),
        ("GET", "/v2/", stranger),
        ("GET", "/v2/", {"Authorization": "Bearer not-a-token"}),
        ("GET", "/v2/", {"Authorization": "Digest x"}),
        ("GET", "/v2/", {"Authorization": basic}),
        ("GET", "/v2/", {"Authorization": "Basic !!!"}),
        *[
            (method, path, {**headers, **accept})
            for method in ("GET", "HEAD")
            for headers in (user, stranger, {}, {"Authorization": basic})
            for path in (
                f"/v2/{REPO}/manifests/v1",
                f"/v2/{REPO}/manifests/{digest}",
                f"/v2/{REPO}/manifests/missing",
                f"/v2/{REPO}/manifests/sha256:{'0' * 64}",
                f"/v2/{REPO}/manifests/-bad-tag-",
                f"/v2/{PRIVATE}/manifests/v1",
                "/v2/fast-public/nothing/manifests/v1",
                "/v2/no-such-registry/app/manifests/v1",
                "/v2/busybox/manifests/latest",
                "/v2/Bad_Name/app/manifests/v1",
                "/v2/fast-public/app/manifests/manifests/v1",
            )
        ],
    ]


def test_hot_routes_answer_as_the_ordinary_stack_does_without_its_router(
    registry: InProcessRegistry, image: Any
) -> None:
    digest = digest_of(image.manifest)
    signer = registry.services.signer
    token, _ = signer.issue("admin", [{"type": "repository", "name": REPO, "actions": ["pull"]}])
    anonymous, _ = signer.issue("", [])
    plain = _without_fast_path(registry)
    probe = _RouterProbe(registry.app.router)
    served = registry.app.middleware_stack
    # The served app, its router probed: Starlette builds the stack around `app.router`.
    registry.app.router = probe  # type: ignore[assignment]
    registry.app.middleware_stack = registry.app.build_middleware_stack()
    try:

        async def compare() -> int:
            compared = 0
            base = "http://registry.test"
            async with (
                httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url=base) as a,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=registry.app), base_url=base
                ) as b,
            ):
                for method, path, headers in _requests(token, anonymous, digest):
                    expected = await a.request(method, path, headers=headers)
                    got = await b.request(method, path, headers=headers)
                    assert _comparable(got) == _comparable(expected), (method, path, headers)
                    compared += 1
                # What is not a hot request goes down the ordinary stack, router and all.
                assert (
                    await b.head("/v2/", headers={"Authorization": f"Bearer {token}"})
                ).is_success
                assert (
                    await b.get(
                        f"/v2/{REPO}/tags/list", headers={"Authorization": f"Bearer {token}"}
                    )
                ).is_success
            return compared

        compared = registry.run(compare())
    finally:
        registry.app.router = probe.router
        registry.app.middleware_stack = served
    assert compared > 80
    assert probe.paths == ["/v2/", f"/v2/{REPO}/tags/list"]


def test_the_token_service_is_routed_before_the_api_and_the_console(
    registry: InProcessRegistry,
) -> None:
    """Docker asks `/auth/token` before every pull; the router tries routes in turn, so the
    token service must not wait behind the sixty routes of /api/v1 and /console."""
    paths = [getattr(route, "path", "") for route in registry.app.routes]
    token = paths.index("/auth/token")
    first_api = next(i for i, path in enumerate(paths) if path.startswith("/api/"))
    first_v2 = next(i for i, path in enumerate(paths) if path.startswith("/v2"))
    assert token < min(first_api, first_v2), paths[: token + 1]
