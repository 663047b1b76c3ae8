"""Console sessions over plain HTTP: the cookie's flags, CSRF on changes, and a sign-out that
holds even against a copied cookie."""

from __future__ import annotations

from contextlib import closing

import httpx

from support.server import RunningServer

SESSION_COOKIE = "ociregistry_session"


def sign_in(server: RunningServer) -> tuple[httpx.Client, str, str]:
    client = httpx.Client(base_url=server.url, timeout=30)
    username, password = server.admin
    response = client.post("/console/session", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    return client, response.json()["csrf_token"], client.cookies[SESSION_COOKIE]


def test_changes_need_the_csrf_token(server: RunningServer, registry_name: str) -> None:
    client, csrf, _ = sign_in(server)
    with closing(client):
        refused = client.post("/api/v1/registries", json={"name": registry_name})
        assert refused.status_code == 403
        assert "X-CSRF-Token" in refused.json()["error"]["message"]
        assert client.get(f"/api/v1/registries/{registry_name}").status_code == 404
        made = client.post(
            "/api/v1/registries", json={"name": registry_name}, headers={"X-CSRF-Token": csrf}
        )
        assert made.status_code == 201, made.text


def test_cookie_means_nothing_to_v2(server: RunningServer) -> None:
    client, _, _ = sign_in(server)
    with closing(client):
        assert client.get("/api/v1/users/me").status_code == 200
        assert client.get("/v2/").status_code == 401


def test_sign_out_revokes_a_copied_cookie(server: RunningServer) -> None:
    client, csrf, token = sign_in(server)
    with closing(client):
        assert client.get("/api/v1/users/me").status_code == 200
        assert client.delete("/console/session").status_code == 403  # no CSRF token
        assert client.delete("/console/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    with httpx.Client(base_url=server.url, cookies={SESSION_COOKIE: token}) as thief:
        assert thief.get("/api/v1/users/me").status_code == 401
        assert thief.get("/console/session").status_code == 401
