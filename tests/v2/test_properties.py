"""Property tests: whatever the chunking and whatever the JSON formatting, content comes back
byte for byte under the digest of the bytes that were sent."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.inprocess import InProcessRegistry

REGISTRY = "props"
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    running = InProcessRegistry(tmp_path_factory.mktemp("properties") / "data")
    running.run(running.services.registries.create(REGISTRY, public=True))
    yield running
    running.close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@st.composite
def chunked_content(draw: st.DrawFn) -> tuple[bytes, list[bytes], bool]:
    """Some bytes, a split of them into chunks, and whether the last chunk rides on the PUT."""
    content = draw(st.binary(min_size=0, max_size=64 * 1024))
    cuts = sorted(draw(st.lists(st.integers(0, len(content)), max_size=8)))
    bounds = [0, *cuts, len(content)]
    chunks = [content[a:b] for a, b in itertools.pairwise(bounds)]
    return content, chunks, draw(st.booleans())


async def _upload_in_chunks(
    registry: InProcessRegistry, image: str, chunks: list[bytes], last_on_put: bool
) -> str:
    client = registry.client
    digest = sha256(b"".join(chunks))
    started = await client.post(f"/v2/{REGISTRY}/{image}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    patched = chunks[:-1] if last_on_put and chunks else chunks
    offset = 0
    for chunk in patched:
        headers = {"Content-Type": "application/octet-stream"}
        if chunk:
            headers["Content-Range"] = f"{offset}-{offset + len(chunk) - 1}"
        response = await client.patch(location, content=chunk, headers=headers)
        assert response.status_code == 202, response.text
        offset += len(chunk)
        assert response.headers["range"] == f"0-{max(offset - 1, 0)}"
        location = response.headers["location"]
    final = chunks[-1] if last_on_put and chunks else b""
    finished = await client.put(location, params={"digest": digest}, content=final)
    assert finished.status_code == 201, finished.text
    assert finished.headers["docker-content-digest"] == digest
    return digest


@PROPERTY_SETTINGS
@given(case=chunked_content())
def test_chunked_upload_round_trips(
    registry: InProcessRegistry, case: tuple[bytes, list[bytes], bool]
) -> None:
    content, chunks, last_on_put = case
    digest = registry.run(_upload_in_chunks(registry, "chunks", chunks, last_on_put))
    assert digest == sha256(content)
    fetched = registry.run(registry.client.get(f"/v2/{REGISTRY}/chunks/blobs/{digest}"))
    assert fetched.status_code == 200
    assert fetched.content == content
    assert fetched.headers["docker-content-digest"] == digest


@PROPERTY_SETTINGS
@given(content=st.binary(max_size=32 * 1024), data=st.data())
def test_byte_ranges_match_content(
    registry: InProcessRegistry, content: bytes, data: st.DataObject
) -> None:
    digest = sha256(content)
    pushed = registry.run(
        registry.client.post(
            f"/v2/{REGISTRY}/ranges/blobs/uploads/", params={"digest": digest}, content=content
        )
    )
    assert pushed.status_code == 201, pushed.text
    if not content:
        return
    start = data.draw(st.integers(0, len(content) - 1))
    end = data.draw(st.integers(start, len(content) + 10))
    fetched = registry.run(
        registry.client.get(
            f"/v2/{REGISTRY}/ranges/blobs/{digest}", headers={"Range": f"bytes={start}-{end}"}
        )
    )
    assert fetched.status_code == 206
    assert fetched.content == content[start : end + 1]
    last = min(end, len(content) - 1)
    assert fetched.headers["content-range"] == f"bytes {start}-{last}/{len(content)}"


_json_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20
)  # any text JSON can carry, escapes and non-ASCII included


@st.composite
def formatted_manifest(draw: st.DrawFn, config_digest: str, config_size: int) -> bytes:
    """One OCI manifest document, serialised with arbitrary but valid JSON formatting."""
    document = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [],
        "annotations": draw(st.dictionaries(_json_text, _json_text, max_size=4)),
    }
    if draw(st.booleans()):
        document = dict(reversed(list(document.items())))
    text = json.dumps(
        document,
        indent=draw(st.sampled_from([None, 0, 1, 2, 4, "\t"])),
        separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])),
        ensure_ascii=draw(st.booleans()),
        sort_keys=draw(st.booleans()),
    )
    padding = draw(st.sampled_from(["", " ", "\n", "\r\n\t "]))
    return (padding + text + padding).encode()


@pytest.fixture(scope="module")
def config_blob(registry: InProcessRegistry) -> tuple[str, int]:
    config = b'{"architecture":"amd64","os":"linux"}'
    digest = sha256(config)
    response = registry.run(
        registry.client.post(
            f"/v2/{REGISTRY}/manifests/blobs/uploads/", params={"digest": digest}, content=config
        )
    )
    assert response.status_code == 201, response.text
    return digest, len(config)


@PROPERTY_SETTINGS
@given(data=st.data(), by_digest=st.booleans())
def test_manifest_bytes_round_trip(
    registry: InProcessRegistry, config_blob: tuple[str, int], data: st.DataObject, by_digest: bool
) -> None:
    body = data.draw(formatted_manifest(*config_blob))
    digest = sha256(body)
    reference = digest if by_digest else "formatted"
    pushed = registry.run(
        registry.client.put(
            f"/v2/{REGISTRY}/manifests/manifests/{reference}",
            content=body,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
    )
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["docker-content-digest"] == digest
    for ref in {reference, digest}:
        fetched = registry.run(registry.client.get(f"/v2/{REGISTRY}/manifests/manifests/{ref}"))
        assert fetched.status_code == 200
        assert fetched.content == body
        assert fetched.headers["docker-content-digest"] == digest


def test_data_folder_holds_one_copy_per_digest(registry: InProcessRegistry, tmp_path: Path) -> None:
    """The same bytes pushed into two images are stored once."""
    content = b"shared layer bytes"
    digest = sha256(content)
    for image in ("copy-one", "copy-two"):
        response = registry.run(
            registry.client.post(
                f"/v2/{REGISTRY}/{image}/blobs/uploads/",
                params={"digest": digest},
                content=content,
            )
        )
        assert response.status_code == 201
    blobs = registry.settings.storage_path / "blobs" / "sha256"
    matches = list(blobs.rglob(digest.removeprefix("sha256:")))
    assert len(matches) == 1
    assert matches[0].read_bytes() == content
