"""Personal access tokens stop working when they expire, as a password and as a bearer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from support.server import RunningServer


def _token(client: httpx.Client, name: str, expires_at: datetime) -> str:
    response = client.post(
        "/api/v1/users/me/tokens", json={"name": name, "expires_at": expires_at.isoformat()}
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def test_expired_tokens_are_refused(
    server: RunningServer, client: httpx.Client, registry_name: str
) -> None:
    now = datetime.now(UTC)
    live = _token(client, f"live-{registry_name}", now + timedelta(days=1))
    expired = _token(client, f"expired-{registry_name}", now - timedelta(seconds=1))
    username = server.admin[0]
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for secret, expected in ((live, 200), (expired, 401)):
            basic = anonymous.get("/api/v1/users/me", auth=(username, secret))
            assert basic.status_code == expected, basic.text
            bearer = anonymous.get(
                "/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"}
            )
            assert bearer.status_code == expected, bearer.text
            token = anonymous.get("/auth/token", auth=(username, secret))
            assert token.status_code == expected, token.text
