"""The registry app served in-process through httpx's ASGI transport.

Fast enough for property tests that push hundreds of examples; everything else drives a real
server process (see server.py).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from ociregistry.app import create_app
from ociregistry.cli import prepare
from ociregistry.config import Settings
from ociregistry.services import Services
from support.pgcluster import PostgresCluster

T = TypeVar("T")
ADMIN_PASSWORD = "in-process-admin"


class InProcessRegistry:
    """An app with its lifespan entered, and a client for it, on a private event loop."""

    def __init__(self, data_dir: Path, *, database_url: str = "") -> None:
        self.settings = Settings(
            data_dir=str(data_dir), admin_password=ADMIN_PASSWORD, database_url=database_url
        )
        prepare(self.settings)
        self.app = create_app(self.settings)
        self._runner = asyncio.Runner()
        self._lifespan: AbstractAsyncContextManager[Any] = self.app.router.lifespan_context(
            self.app
        )
        self.run(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://registry.test",
            auth=("admin", ADMIN_PASSWORD),
        )

    @property
    def services(self) -> Services:
        return self.app.state.services

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self._lifespan.__aexit__(None, None, None))
        self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def on_database(kind: str, data_dir: Path, name: str) -> Iterator[InProcessRegistry]:
    """An in-process registry on SQLite in `data_dir` (`kind` "sqlite") or on a database
    `name` of a PostgreSQL cluster of its own ("postgres"), closed (and the cluster stopped)
    afterwards."""
    cluster = PostgresCluster().start() if kind == "postgres" else None
    try:
        url = cluster.create_database(name) if cluster else ""
        running = InProcessRegistry(data_dir, database_url=url)
        try:
            yield running
        finally:
            running.close()
    finally:
        if cluster is not None:
            cluster.stop()


async def push_image(client: httpx.AsyncClient, repo: str, image: Any, tag: str) -> None:
    """Push an `oci.Image`'s blobs (POST, then PUT), then its manifest under `tag`."""
    for blob in image.blobs:
        started = await client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        done = await client.put(
            started.headers["location"], params={"digest": digest}, content=blob
        )
        assert done.status_code == 201, done.text
    put = await client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert put.status_code == 201, put.text
