"""The audit log (issue 14, point 5): management changes, /v2 deletions, sign-ins and failed
sign-ins, each with actor, time, client address, request id, target and outcome; listed newest
first, paged and filtered, all of it for admins and their registries' for owners; bounded by
`audit_log_retention_days`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine

from authtools import add_user
from ociregistry.db.models import AuditEvent, utcnow
from support.inprocess import InProcessRegistry
from support.oci import make_image, push_image
from support.server import RunningServer

BURST = 50


def _events(client: httpx.Client, **filters: str) -> list[dict]:
    response = client.get("/api/v1/audit-log", params={"page_size": 100, **filters})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_changes_deletions_and_sign_ins_are_recorded(
    server: RunningServer, client: httpx.Client, registry: str
) -> None:
    request_id = uuid.uuid4().hex
    patched = client.patch(
        f"/api/v1/registries/{registry}",
        json={"quota_bytes": 10_000_000, "immutable_tags": ["v*"]},
        headers={"X-Request-Id": request_id},
    )
    assert patched.status_code == 200
    image = make_image(f"audit-{registry}")
    push_image(client, f"{registry}/app", image, "1.0")
    assert client.delete(f"/v2/{registry}/app/manifests/{image.digest}").status_code == 202
    failed = httpx.get(
        f"{server.url}/auth/token", params={"service": "ociregistry"}, auth=("admin", "wrong")
    )
    assert failed.status_code == 401
    console = httpx.post(
        f"{server.url}/console/session", json={"username": "admin", "password": "nope"}
    )
    assert console.status_code == 401

    events = _events(client, registry=registry)
    update = next(e for e in events if e["action"] == "registry.update")
    assert update["actor"] == "admin"
    assert update["client"] == "127.0.0.1"
    assert update["request_id"] == request_id
    assert update["target"] == f"/api/v1/registries/{registry}"
    assert update["outcome"] == "success" and update["status"] == 200
    assert update["detail"] == {"quota_bytes": 10_000_000, "immutable_tags": ["v*"]}
    assert update["at"].endswith("Z")
    deletion = next(e for e in events if e["action"] == "manifest.delete")
    assert deletion["target"] == f"/v2/{registry}/app/manifests/{image.digest}"
    assert deletion["outcome"] == "success"
    assert [e["action"] for e in events].index("manifest.delete") < [
        e["action"] for e in events
    ].index("registry.update")  # newest first

    sign_ins = _events(client, actor="admin", outcome="denied")
    actions = {e["action"] for e in sign_ins}
    assert {"token.sign_in", "session.sign_in"} <= actions


def test_every_kind_of_change_the_issue_names_is_recorded(
    client: httpx.Client, registry_name: str
) -> None:
    """Issue 14, point 5, line by line: registries (creation, visibility, labels, deletion),
    members, tokens, image and tag deletions through the API (an immutable tag deleted by its
    registry's owner among them, as point 4 asks), each with its actor, request id, target and
    outcome; the registry's own events under its name."""
    registry, group = registry_name, f"g-{registry_name}"
    sent: dict[str, str] = {}  # request id -> the action it must be recorded as

    def send(
        action: str, method: str, path: str, status: int | set[int], **kwargs: Any
    ) -> httpx.Response:
        request_id = uuid.uuid4().hex
        response = client.request(method, path, headers={"X-Request-Id": request_id}, **kwargs)
        assert response.status_code in ({status} if isinstance(status, int) else status), (
            response.text
        )
        sent[request_id] = action
        return response

    send("group.create", "POST", "/api/v1/project-groups", 201, json={"name": group})
    send("registry.create", "POST", "/api/v1/registries", 201,
         json={"name": registry, "project_group": group})  # fmt: skip
    send("registry.update", "PATCH", f"/api/v1/registries/{registry}", 200,
         json={"public": True, "immutable_tags": ["v*"]})  # fmt: skip
    send("registry.labels", "PUT", f"/api/v1/registries/{registry}/labels", 200,
         json={"labels": {"team": "audit"}})  # fmt: skip
    send("member.set", "PUT", f"/api/v1/project-groups/{group}/members/admin", 200,
         json={"role": "guest"})  # fmt: skip
    send("member.remove", "DELETE", f"/api/v1/project-groups/{group}/members/admin", 204)
    token = send("token.create", "POST", "/api/v1/users/me/tokens", 201,
                 json={"name": f"audit-{registry}"}).json()  # fmt: skip
    send("token.revoke", "DELETE", f"/api/v1/users/me/tokens/{token['id']}", 204)
    push_image(client, f"{registry}/app", make_image(f"{registry}-v"), "v1")
    push_image(client, f"{registry}/gone", make_image(f"{registry}-g"), "1.0")
    send("tag.delete", "DELETE", f"/api/v1/registries/{registry}/images/app/-/tags/v1", 200)
    send("image.delete", "DELETE", f"/api/v1/registries/{registry}/images/gone", {200, 204})

    recorded = {e["request_id"]: e for e in _events(client, actor="admin")}
    for request_id, action in sent.items():
        event = recorded.get(request_id)
        assert event is not None, f"{action} not recorded"
        assert event["action"] == action
        assert event["outcome"] == "success" and event["client"] == "127.0.0.1"
    own = {e["action"] for e in _events(client, registry=registry)}
    assert {"registry.update", "registry.labels", "tag.delete", "image.delete"} <= own
    immutable = next(e for e in recorded.values() if e["action"] == "tag.delete")
    assert immutable["target"] == f"/api/v1/registries/{registry}/images/app/-/tags/v1"

    send("registry.delete", "DELETE", f"/api/v1/registries/{registry}", {202, 204},
         params={"delete_images": "true"})  # fmt: skip
    deleted = [e for e in _events(client, actor="admin") if e["action"] == "registry.delete"]
    assert deleted and deleted[0]["registry"] == registry


def test_owners_see_their_registries_events_only(
    server: RunningServer, client: httpx.Client, registry_name: str
) -> None:
    owner, stranger = f"owner-{registry_name}", f"stranger-{registry_name}"
    add_user(server, owner, "owner-password-1")
    add_user(server, stranger, "stranger-password-1")
    with (
        httpx.Client(base_url=server.url, auth=(owner, "owner-password-1")) as mine,
        httpx.Client(base_url=server.url, auth=(stranger, "stranger-password-1")) as theirs,
    ):
        assert mine.post("/api/v1/registries", json={"name": registry_name}).status_code == 201
        assert (
            mine.patch(
                f"/api/v1/registries/{registry_name}", json={"remark": "audited"}
            ).status_code
            == 200
        )
        denied = theirs.patch(f"/api/v1/registries/{registry_name}", json={"remark": "x"})
        assert denied.status_code == 404  # a private registry it cannot see
        seen = _events(mine)
        assert {e["registry"] for e in seen} == {registry_name}
        assert {"registry.create", "registry.update"} <= {e["action"] for e in seen}
        assert any(e["actor"] == stranger and e["outcome"] == "failure" for e in seen)
        assert _events(theirs) == []
        assert theirs.get("/api/v1/audit-log", params={"sort": "name"}).status_code == 400
    assert httpx.get(f"{server.url}/api/v1/audit-log").status_code == 401
    everything = _events(client, action="registry.create", registry=registry_name)
    assert len(everything) == 1 and everything[0]["actor"] == owner
    paged = client.get("/api/v1/audit-log", params={"page_size": 1, "page": 2}).json()
    assert len(paged["items"]) == 1 and paged["total"] >= 2


def test_events_older_than_the_retention_go(tmp_path: Path) -> None:
    registry = InProcessRegistry(tmp_path / "data")
    try:

        async def steps() -> list[str]:
            async with registry.services.db.write() as conn:
                await conn.execute(
                    AuditEvent.__table__.insert().values(
                        at=utcnow() - timedelta(days=91),
                        actor="ancient",
                        client="127.0.0.1",
                        action="registry.update",
                        method="PATCH",
                        target="/api/v1/registries/gone",
                        status=200,
                        outcome="success",
                    )
                )
            created = await registry.client.post("/api/v1/registries", json={"name": "kept"})
            assert created.status_code == 201
            listed = await registry.client.get("/api/v1/audit-log")
            return [event["actor"] for event in listed.json()["items"]]

        assert registry.run(steps()) == ["admin"]
    finally:
        registry.close()


def test_a_burst_of_audited_requests_shares_its_commits(tmp_path: Path) -> None:
    """Audited requests that arrive together (a client deleting in a loop, a flood of failed
    sign-ins) share their audit transactions instead of queueing one database write each
    behind the pushes' writes (in the full run, deletions racing pushes waited minutes so);
    and each answer comes after its event is committed, so every one is in the log."""
    registry = InProcessRegistry(tmp_path / "data")
    commits: list[object] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    try:

        async def burst() -> tuple[list[int], int]:
            created = await registry.client.post("/api/v1/registries", json={"name": "burst"})
            assert created.status_code == 201
            event.listen(Engine, "commit", committed)
            try:
                answers = await asyncio.gather(
                    *(
                        registry.client.delete(f"/api/v1/registries/burst/images/gone{n}")
                        for n in range(BURST)
                    )
                )
            finally:
                event.remove(Engine, "commit", committed)
            listed = await registry.client.get(
                "/api/v1/audit-log", params={"action": "image.delete", "page_size": 100}
            )
            return [a.status_code for a in answers], listed.json()["total"]

        statuses, recorded = registry.run(burst())
        assert statuses == [404] * BURST
        assert recorded == BURST
        assert 1 <= len(commits) <= BURST // 5, len(commits)
    finally:
        registry.close()
