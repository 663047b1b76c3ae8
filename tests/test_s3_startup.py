"""`serve` on object storage that it cannot use stops at start with one clear line.

A bucket that does not exist, credentials S3 refuses and an endpoint nobody answers on are
each found before any worker starts: the line names the setting and what S3 answered, and no
traceback reaches the operator.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ociregistry.config import ConfigError, Settings
from support.s3gateway import S3Gateway
from support.server import free_port

pytestmark = pytest.mark.s3


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "ociregistry", "serve", "--port", str(free_port()),
            "--workers", "1", "--data-dir", str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OCIREGISTRY_ADMIN_PASSWORD": "x" * 12, **env},
    )  # fmt: skip


def _one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_bucket_that_does_not_exist_stops_serve(tmp_path: Path, s3_gateway: S3Gateway) -> None:
    result = _serve(tmp_path, {**s3_gateway.environment(), "OCIREGISTRY_STORAGE": "s3://nobucket"})
    line = _one_clear_line(result)
    assert "storage s3://nobucket" in line and "does not exist" in line
    assert "NoSuchBucket" in line and s3_gateway.endpoint_url in line


@pytest.mark.parametrize("wrong", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_wrong_credentials_stop_serve(tmp_path: Path, s3_gateway: S3Gateway, wrong: str) -> None:
    bucket = s3_gateway.create_bucket(f"creds-{wrong.lower().replace('_', '-')}")
    env = {**s3_gateway.environment(), "OCIREGISTRY_STORAGE": f"s3://{bucket}", wrong: "WRONG1"}
    line = _one_clear_line(_serve(tmp_path, env))
    assert "credentials" in line and "refused" in line and "S3 answered 403" in line
    assert ("InvalidAccessKeyId" if wrong == "AWS_ACCESS_KEY_ID" else "SignatureDoesNotMatch") in (
        line
    )


def test_an_unreachable_endpoint_stops_serve(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    env = {
        "OCIREGISTRY_STORAGE": "s3://bucket/prefix",
        "OCIREGISTRY_S3_ENDPOINT_URL": nobody,
        "AWS_ACCESS_KEY_ID": "any",
        "AWS_SECRET_ACCESS_KEY": "any",
    }
    line = _one_clear_line(_serve(tmp_path, env))
    assert f"s3_endpoint_url {nobody} is unreachable" in line


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("s3://A_B", "invalid bucket name"),
        ("s3://ab", "invalid bucket name"),
        ("s3://", "invalid bucket name"),
        ("s3://bucket/a//b", "invalid prefix"),
    ],
)
def test_a_malformed_storage_url_is_refused(storage: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(storage=storage)


def test_s3_settings_default_to_the_standard_aws_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.load(storage="s3://bucket/some/prefix/")
    assert settings.s3_bucket_and_prefix == ("bucket", "some/prefix")
    assert (settings.resolved_s3_endpoint_url, settings.resolved_s3_region) == (None, "us-east-1")
    assert settings.s3_redirect is True and settings.s3_redirect_ttl_seconds == 1200
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://general:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert Settings.load().resolved_s3_endpoint_url == "http://general:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3only:1")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    settings = Settings.load()
    assert (settings.resolved_s3_endpoint_url, settings.resolved_s3_region) == (
        "http://s3only:1",
        "eu-central-1",
    )
    assert Settings.load(s3_endpoint_url="http://mine:1").resolved_s3_endpoint_url == (
        "http://mine:1"
    )
