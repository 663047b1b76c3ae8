"""The first hour of a new user: sign-in blocks that never lock the admin out, a CLI that says
what it did and never answers an expected condition with a traceback, and token lists that
page like every list.

The module runs servers of its own: its tests fail sign-ins on purpose, with a low limit.
Requests come from addresses of their own (`X-Forwarded-For`, which the server trusts from
127.0.0.1, as behind a local reverse proxy).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from authtools import add_user, basic, cli, create_pat, describe, push_image
from ociregistry.cli import _parser
from support.server import ADMIN_PASSWORD, RunningServer

MAX_FAILURES = 3
BLOCK_SECONDS = 120  # outlasts any test here; the backoff test has a server of its own
BACKOFF_BLOCK_SECONDS = 4
_addresses = itertools.count(1)


def address() -> dict[str, str]:
    """A client address no other request of this module used."""
    n = next(_addresses)
    return {"X-Forwarded-For": f"10.77.{n // 256 % 256}.{n % 256}"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that blocks an account after three failed sign-ins."""
    running = RunningServer(
        tmp_path_factory.mktemp("first-hour") / "data",
        env={
            "OCIREGISTRY_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
            "OCIREGISTRY_LOGIN_BLOCK_SECONDS": str(BLOCK_SECONDS),
        },
    ).start()
    yield running
    running.stop()


@pytest.fixture
def http(guarded: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, timeout=60) as client:
        yield client


def sign_in(
    http: httpx.Client, how: str, username: str, password: str, where: dict[str, str]
) -> httpx.Response:
    """One sign-in: Basic on /v2/, Basic on GET /auth/token, or the OAuth2 password grant."""
    if how == "v2":
        return http.get("/v2/", headers={"Authorization": basic(username, password), **where})
    if how == "token GET":
        return http.get(
            "/auth/token",
            params={"service": "ociregistry"},
            headers={"Authorization": basic(username, password), **where},
        )
    form = {"grant_type": "password", "username": username, "password": password}
    return http.post("/auth/token", data={**form, "service": "ociregistry"}, headers=where)


def fail(http: httpx.Client, username: str, times: int, where: dict[str, str]) -> None:
    for attempt in range(times):
        response = sign_in(http, "v2", username, f"wrong-{attempt}", where)
        assert response.status_code == 401, describe(response)


def assert_blocked(response: httpx.Response) -> int:
    """A 429 docker understands: the OCI code, Retry-After, and the wait in the message."""
    assert response.status_code == 429, describe(response)
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) > 0, response.headers
    error = response.json()["errors"][0]
    assert error["code"] == "TOOMANYREQUESTS", error
    assert re.search(r"try again in \d+ (seconds|minutes|hours)", error["message"]), error
    return int(retry_after)


# -- point 9 and 12: sign-in blocks --------------------------------------------------------------


@pytest.mark.parametrize("how", ["v2", "token GET", "token POST"])
def test_a_blocked_account_gets_the_oci_code_with_the_wait(
    guarded: RunningServer, http: httpx.Client, how: str
) -> None:
    username = f"blocked-{how.replace(' ', '-').lower()}"
    add_user(guarded, username, "right-password-1")
    fail(http, username, MAX_FAILURES, address())
    assert_blocked(sign_in(http, how, username, "right-password-1", address()))


def test_failures_of_other_accounts_never_lock_the_admin_out(
    guarded: RunningServer, http: httpx.Client
) -> None:
    """Failures by several accounts (and a revoked token tried as a password) from one address
    block those accounts only: the admin with the right password still gets in from there."""
    add_user(guarded, "lo-alice", "alice-password-1")
    token_id, secret = create_pat(guarded, "lo-alice", "ci")
    cli(guarded, "token", "revoke", "lo-alice", token_id)
    here = address()
    fail(http, "lo-alice", MAX_FAILURES - 1, here)
    assert sign_in(http, "v2", "lo-alice", secret, here).status_code == 401
    assert_blocked(sign_in(http, "v2", "lo-alice", "alice-password-1", address()))
    for username in ("lo-bob", "lo-nobody", "admin"):
        fail(http, username, MAX_FAILURES - 1, here)  # the admin's own typos too, short of a block
    for how in ("v2", "token GET", "token POST"):
        response = sign_in(http, how, "admin", ADMIN_PASSWORD, here)
        assert response.status_code == 200, describe(response)


def test_an_address_failing_across_many_accounts_is_blocked(
    guarded: RunningServer, http: httpx.Client
) -> None:
    """Only guessing across many accounts blocks an address (ten times an account's limit);
    the same accounts from another address are refused for their own blocks only."""
    add_user(guarded, "spray-target", "spray-password-1")
    here = address()
    for n in range(10):
        fail(http, f"spray-{n}", MAX_FAILURES, here)
    assert_blocked(sign_in(http, "v2", "spray-target", "spray-password-1", here))
    response = sign_in(http, "v2", "spray-target", "spray-password-1", address())
    assert response.status_code == 200, describe(response)


def test_blocks_of_an_account_grow_longer(tmp_path: Path) -> None:
    """Each failure once a block has run out blocks the account again, twice as long."""
    server = RunningServer(
        tmp_path / "data",
        env={
            "OCIREGISTRY_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
            "OCIREGISTRY_LOGIN_BLOCK_SECONDS": str(BACKOFF_BLOCK_SECONDS),
        },
    ).start()
    try:
        add_user(server, "backoff", "backoff-password-1")
        with httpx.Client(base_url=server.url, timeout=60) as http:
            fail(http, "backoff", MAX_FAILURES, address())
            first = assert_blocked(sign_in(http, "v2", "backoff", "wrong", address()))
            assert first <= BACKOFF_BLOCK_SECONDS
            for _ in range(200):  # wait out the block (polling; no time is asserted)
                response = sign_in(http, "v2", "backoff", "wrong-again", address())
                if response.status_code != 429:
                    break
                time.sleep(0.25)
            assert response.status_code == 401, describe(response)
            again = sign_in(http, "v2", "backoff", "backoff-password-1", address())
            second = assert_blocked(again)
        assert second > BACKOFF_BLOCK_SECONDS, (
            f"the second block ({second} s) is not longer than the first ({first} s)"
        )
    finally:
        server.kill()


def test_an_admin_unlocks_an_account_from_the_cli(
    guarded: RunningServer, http: httpx.Client
) -> None:
    add_user(guarded, "locked-cli", "locked-password-1")
    fail(http, "locked-cli", MAX_FAILURES, address())
    users = {u["username"]: u for u in json.loads(cli(guarded, "user", "list", "--json"))}
    assert users["locked-cli"]["blocked_until"], users["locked-cli"]
    assert users["admin"]["blocked_until"] is None
    table = cli(guarded, "user", "list")
    assert "BLOCKED_UNTIL" in table.splitlines()[0]
    assert "unlocked user locked-cli" in cli(guarded, "user", "unlock", "locked-cli")
    response = sign_in(http, "v2", "locked-cli", "locked-password-1", address())
    assert response.status_code == 200, describe(response)
    result = guarded.cli("user", "unlock", "no-such-user", check=False)
    assert result.returncode == 2 and "does not exist" in result.stderr, result.stderr


def test_an_admin_unlocks_an_account_through_the_api(
    guarded: RunningServer, http: httpx.Client
) -> None:
    add_user(guarded, "locked-api", "locked-password-1")
    add_user(guarded, "not-admin", "not-admin-password-1")
    fail(http, "locked-api", MAX_FAILURES, address())
    admin = {"Authorization": basic("admin", ADMIN_PASSWORD), **address()}
    listed = http.get("/api/v1/users", params={"q": "locked-api"}, headers=admin).json()
    assert listed["items"][0]["blocked_until"], listed
    user = {"Authorization": basic("not-admin", "not-admin-password-1"), **address()}
    refused = http.post("/api/v1/users/locked-api:unlock", headers=user)
    assert refused.status_code == 403, describe(refused)
    missing = http.post("/api/v1/users/no-such-user:unlock", headers=admin)
    assert missing.status_code == 404, describe(missing)
    response = http.post("/api/v1/users/locked-api:unlock", headers=admin)
    assert response.status_code == 200, describe(response)
    assert response.json()["blocked_until"] is None
    again = sign_in(http, "v2", "locked-api", "locked-password-1", address())
    assert again.status_code == 200, describe(again)


# -- point 17: the token list pages ----------------------------------------------------------------


def test_the_token_list_pages(guarded: RunningServer, http: httpx.Client) -> None:
    add_user(guarded, "many-tokens", "many-tokens-password-1")
    for n in range(5):
        create_pat(guarded, "many-tokens", f"token-{n}")
    headers = {"Authorization": basic("many-tokens", "many-tokens-password-1"), **address()}
    first = http.get("/api/v1/users/me/tokens", params={"page_size": 2}, headers=headers).json()
    assert (first["total"], first["page"], first["page_size"]) == (5, 1, 2), first
    assert [t["name"] for t in first["items"]] == ["token-0", "token-1"]
    last = http.get(
        "/api/v1/users/me/tokens", params={"page_size": 2, "page": 3}, headers=headers
    ).json()
    assert [t["name"] for t in last["items"]] == ["token-4"]
    newest = http.get(
        "/api/v1/users/me/tokens", params={"sort": "-created_at", "q": "token-"}, headers=headers
    ).json()
    assert newest["items"][0]["name"] == "token-4"
    bad = http.get("/api/v1/users/me/tokens", params={"page_size": 101}, headers=headers)
    assert bad.status_code == 400, describe(bad)
    out = cli(guarded, "token", "list", "many-tokens", "--page-size", "2", "--page", "2")
    names = [line.split()[1] for line in out.splitlines()[1:] if "  token-" in line]
    assert names == ["token-2", "token-3"], out
    assert "--page 3 for more" in out


# -- point 14: the data folder ------------------------------------------------------------------


def _bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OCIREGISTRY_")}


def test_the_cli_refuses_a_data_folder_without_a_registry(tmp_path: Path) -> None:
    for command in (["user", "list"], ["registry", "list"], ["gc", "--dry-run"]):
        result = subprocess.run(
            [sys.executable, "-m", "ociregistry", *command],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=_bare_env(),
        )
        assert result.returncode == 2, result
        message = result.stderr
        assert str(tmp_path / "data") in message, message
        for way in ("--data-dir", "OCIREGISTRY_DATA_DIR", "--config"):
            assert way in message, message
        assert "Traceback" not in message
        assert not (tmp_path / "data").exists(), f"{command} created a data folder"


def test_serve_names_its_data_folder_first(guarded: RunningServer) -> None:
    first = guarded.log_path.read_text().splitlines()[0]
    data = guarded.data_dir.resolve()
    assert first.startswith(f"ociregistry: data folder {data};"), first
    assert f"database {data / 'registry.db'}" in first, first
    assert f"storage {data / 'storage'}" in first, first


# -- point 15: CLI manners ----------------------------------------------------------------------


def _data(server: RunningServer) -> list[str]:
    return ["--data-dir", str(server.data_dir)]


def test_user_add_without_a_terminal_says_what_to_do(guarded: RunningServer) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ociregistry", "user", "add", "no-tty", *_data(guarded)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=guarded.env,
    )
    assert result.returncode == 2, result
    assert "--password-stdin" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_closed_pipe_ends_quietly(guarded: RunningServer) -> None:
    """`ociregistry signing-cert | head -0`: the reader is gone before anything is written."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ociregistry", "signing-cert", *_data(guarded)],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            env=guarded.env,
        )
    finally:
        os.close(writer)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_gc_dry_run_says_what_the_grace_period_holds_back(
    guarded: RunningServer, http: httpx.Client
) -> None:
    guarded.create_registry("gc-first")
    admin = httpx.Client(base_url=guarded.url, auth=("admin", ADMIN_PASSWORD), timeout=60)
    with admin:
        pushed = push_image(admin, "gc-first/app", "gc-first", tag="1.0")
    cli(guarded, "image", "delete", "gc-first", "app")
    size = len(pushed.manifest) + len(pushed.config) + len(pushed.layer)
    out = cli(guarded, "gc", "--dry-run")
    assert "would free 0 bytes in 0 blobs" in out, out
    assert "deleted" not in out and "freed" not in out.replace("would free", ""), out
    assert f"holds back 3 unreferenced blobs ({size} bytes)" in out, out
    assert "--grace-seconds 0" in out, out
    out = cli(guarded, "gc", "--dry-run", "--grace-seconds", "0")
    assert f"would free {size} bytes in 3 blobs" in out, out
    report = json.loads(cli(guarded, "gc", "--dry-run", "--json"))
    assert (report["blobs_held"], report["bytes_held"]) == (3, size), report


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}")
        else:
            yield path, action


def test_every_cli_argument_has_help() -> None:
    missing = [
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, action in _walk(_parser(), "ociregistry")
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert not missing, f"arguments without help text: {missing}"


# -- point 13: scripts/serve starts offline ------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
FAKE_PYTHON = """#!/bin/sh
# A venv's python that records each `pip install` and provides the entry point it would.
echo "$@" >>"$(dirname "$0")/../pip-calls"
printf '#!/bin/sh\\necho serving "$@"\\n' >"$(dirname "$0")/ociregistry"
chmod +x "$(dirname "$0")/ociregistry"
"""


def test_scripts_serve_installs_only_when_needed(tmp_path: Path) -> None:
    """The first start installs; later starts run at once (offline too) until pyproject.toml
    changes."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "serve"
    script.write_text((ROOT / "scripts" / "serve").read_text())
    script.chmod(0o755)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    calls = tmp_path / ".venv" / "pip-calls"

    def start() -> str:
        result = subprocess.run([str(script), "--port", "5999"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "serving serve --port 5999", result.stdout
        return calls.read_text() if calls.exists() else ""

    assert start().count("pip install") == 1
    assert start().count("pip install") == 1, "a second start installed again"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert start().count("pip install") == 2, "a changed pyproject.toml was not installed"
    assert start().count("pip install") == 2


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["image", "list", "no-such-registry"], "does not exist"),
        (["token", "create", "no-such-user", "ci"], "does not exist"),
        (["token", "create", "admin", "ci", "--expires-days", "0"], "at least 1"),
        (["gc", "--grace-seconds", "-5"], "0 or more"),
        (["registry", "create", "A"], "invalid registry name"),
    ],
)
def test_expected_conditions_end_without_a_traceback(
    guarded: RunningServer, command: list[str], says: str
) -> None:
    result = guarded.cli(*command, check=False)
    assert result.returncode == 2, result
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
