"""Logs in JSON on a real server with two workers: one JSON object a line, the access log's
fields, request ids kept or made, and not one secret of a realistic session in any line."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx

from authtools import basic, bearer, create_pat, token_for
from ociregistry.authapi.credentials import SESSION_COOKIE
from support.oci import make_image, push_image
from support.server import RunningServer

METRICS_TOKEN = "metrics-secret-7f3a9c"
WRONG_PASSWORD = "wrong-password-5d1e8b"
ACCESS_FIELDS = {
    "time", "level", "logger", "message", "request_id", "method", "route", "path", "status",
    "duration_ms", "bytes_in", "bytes_out", "client", "user", "user_agent", "instance",
}  # fmt: skip
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def test_a_realistic_session_logs_json_lines_with_request_ids_and_no_secret(
    tmp_path: Path,
) -> None:
    server = RunningServer(
        tmp_path / "data",
        workers=2,
        env={"OCIREGISTRY_LOG_FORMAT": "json", "OCIREGISTRY_METRICS_TOKEN": METRICS_TOKEN},
    ).start()
    secrets: list[str] = [server.admin[1], WRONG_PASSWORD, METRICS_TOKEN]
    try:
        server.create_registry("logged", public=False)
        _, pat = create_pat(server, "admin", "ci")
        secrets.append(pat)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            token = token_for(http, server.admin, ["repository:logged/app:pull,push"])
            secrets.append(token)
            image = make_image("logged")
            http.headers["Authorization"] = bearer(token)
            push_image(http, "logged/app", image, tag="1.0")
            pulled = http.get("/v2/logged/app/manifests/1.0", headers={"Accept": image.media_type})
            assert pulled.status_code == 200
            # the API with a personal access token, as Basic and as Bearer
            for authorization in (basic("admin", pat), bearer(pat)):
                listed = http.get("/api/v1/registries", headers={"Authorization": authorization})
                assert listed.status_code == 200, listed.text
            # a presigned-style query string is never logged
            http.get("/v2/logged/app/blobs/sha256:" + "0" * 64 + "?X-Amz-Signature=sig-e4d2c1")
            secrets.append("sig-e4d2c1")
            wrong = http.get("/v2/", headers={"Authorization": basic("admin", WRONG_PASSWORD)})
            assert wrong.status_code == 401
            scraped = http.get("/metrics", headers={"Authorization": bearer(METRICS_TOKEN)})
            assert scraped.status_code == 200
            # the request id: a well-formed one is kept, echoed and put in error bodies
            missing = http.get(
                "/v2/logged/app/manifests/nope", headers={"X-Request-Id": "client-id-0042"}
            )
            assert missing.status_code == 404
            assert missing.headers["x-request-id"] == "client-id-0042"
            assert missing.json()["errors"][0]["detail"]["request_id"] == "client-id-0042"
            bad_id = http.get("/api/v1/nothing", headers={"X-Request-Id": "no spaces <allowed>"})
            made = bad_id.headers["x-request-id"]
            assert made != "no spaces <allowed>" and re.fullmatch(r"[0-9a-f]{32}", made)
            assert bad_id.json()["error"]["detail"]["request_id"] == made
            forwarded = http.get("/livez", headers={"X-Forwarded-For": "203.0.113.9"})
            assert forwarded.status_code == 200
        with httpx.Client(base_url=server.url, timeout=60) as console:
            signed_in = console.post(
                "/console/session", json={"username": "admin", "password": server.admin[1]}
            )
            assert signed_in.status_code == 200
            csrf = signed_in.json()["csrf_token"]
            secrets += [console.cookies[SESSION_COOKIE], csrf]
            assert console.get("/api/v1/users/me").status_code == 200
            out = console.delete("/console/session", headers={"X-CSRF-Token": csrf})
            assert out.status_code == 204
    finally:
        server.stop()

    text = server.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # all JSON
    for line in lines:
        assert {"time", "level", "logger", "message", "instance"} <= line.keys(), line
        assert RFC3339_UTC.fullmatch(line["time"]), line["time"]
    access = [line for line in lines if line["logger"] == "ociregistry.access"]
    assert access, "no access log line"
    for line in access:
        assert line.keys() >= ACCESS_FIELDS, line
    by_id = {line["request_id"]: line for line in access}
    kept = by_id["client-id-0042"]
    assert (kept["method"], kept["route"], kept["path"], kept["status"]) == (
        "GET",
        "/v2/{name}/manifests/{reference}",
        "/v2/logged/app/manifests/nope",
        404,
    )
    assert kept["user"] == "admin" and kept["user_agent"].startswith("python-httpx")
    assert by_id[made]["status"] == 404
    pushes = [line for line in access if line["method"] == "PUT" and line["status"] == 201]
    assert pushes and all(line["bytes_in"] > 0 for line in pushes)
    assert any(line["client"] == "203.0.113.9" for line in access)  # a trusted proxy's word
    assert all(line["user"] == "anonymous" for line in access if line["path"] == "/livez")

    for secret in secrets:
        assert secret not in text, f"a secret reached the logs: {secret[:6]}…"
        assert base64.b64encode(f"admin:{secret}".encode()).decode() not in text


def test_the_client_address_comes_from_trusted_proxies_only(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "data",
        workers=2,
        env={"OCIREGISTRY_LOG_FORMAT": "json", "OCIREGISTRY_FORWARDED_ALLOW_IPS": "10.9.9.9"},
    ).start()
    try:
        response = httpx.get(
            f"{server.url}/livez",
            headers={"X-Forwarded-For": "198.51.100.7", "X-Request-Id": "untrusted-proxy"},
        )
        assert response.status_code == 200
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    (line,) = [line for line in lines if line.get("request_id") == "untrusted-proxy"]
    assert line["client"] == "127.0.0.1"  # 127.0.0.1 is no trusted proxy here
