"""`ociregistry config show` and the generated configuration reference, run as an operator
runs them."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ociregistry.cli.configuration import missing_descriptions, reference
from ociregistry.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _ociregistry(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCIREGISTRY_")}
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        check=True,
    )


def test_config_show_names_every_setting_its_source_and_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "registry.toml"
    config.write_text('workers = 3\nlog_format = "json"\nport = 6000\n')
    env = {
        "OCIREGISTRY_ADMIN_PASSWORD": "admin-secret-91",
        "OCIREGISTRY_METRICS_TOKEN": "metrics-secret-92",
        "OCIREGISTRY_DATABASE_URL": "postgresql+asyncpg://reg:db-secret-93@db.internal/reg",
        "OCIREGISTRY_PORT": "6500",
    }
    args = ["config", "show", "--config", str(config), "--host", "0.0.0.0"]
    text = _ociregistry(*args, env=env).stdout
    rows = json.loads(_ociregistry(*args, "--json", env=env).stdout)
    for secret in ("admin-secret-91", "metrics-secret-92", "db-secret-93"):
        assert secret not in text and secret not in json.dumps(rows)
    found = {row["setting"]: (row["value"], row["source"]) for row in rows}
    assert list(found) == [field.name for field in dataclasses.fields(Settings)]
    assert found["host"] == ("0.0.0.0", "flag")
    assert found["port"] == (6500, "environment")  # the environment beats the file
    assert found["workers"] == (3, "file")
    assert found["log_format"] == ("json", "file")
    assert found["admin_password"] == ("********", "environment")
    assert found["metrics_token"] == ("********", "environment")
    assert found["database_url"] == ("postgresql+asyncpg://reg:***@db.internal/reg", "environment")
    assert found["shutdown_timeout_seconds"] == (30, "default")
    for name in found:
        assert name in text
    assert re.search(r"^port +6500 +\(environment\)$", text, re.MULTILINE), text


def test_the_configuration_reference_is_generated_from_the_settings() -> None:
    assert missing_descriptions() == [], "describe each setting by a comment on its line"
    assert DOCS.read_text() == reference(), (
        "docs/configuration.md is stale: ociregistry config reference > docs/configuration.md"
    )
    for field in dataclasses.fields(Settings):
        assert f"`OCIREGISTRY_{field.name.upper()}`" in DOCS.read_text()


def test_config_reference_command_prints_the_same_file() -> None:
    assert _ociregistry("config", "reference", env={}).stdout == DOCS.read_text()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OCIREGISTRY_LOG_FORMAT", "xml", "log_format must be text or json"),
        ("OCIREGISTRY_SHUTDOWN_TIMEOUT_SECONDS", "-1", "cannot be negative"),
        ("OCIREGISTRY_SHUTDOWN_DELAY_SECONDS", "soon", "shutdown_delay_seconds has an invalid"),
    ],
)
def test_bad_operations_settings_are_named(name: str, value: str, message: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCIREGISTRY_")}
    refused = subprocess.run(
        [sys.executable, "-m", "ociregistry", "config", "show"],
        capture_output=True,
        text=True,
        env={**clean, name: value},
    )
    assert refused.returncode == 2
    assert message in refused.stderr and "Traceback" not in refused.stderr


def test_the_readme_documents_object_storage_and_several_instances() -> None:
    """Issue 12's acceptance: the README's settings table has every S3 setting with its
    variable, and the README names the nginx example for three instances (a file that
    exists), the bucket lifecycle rule operators should still add, and how to move a
    filesystem data folder to a bucket."""
    readme = (DOCS.parents[1] / "README.md").read_text()
    for field in dataclasses.fields(Settings):
        if field.name == "storage" or field.name.startswith("s3_"):
            row = f"| `{field.name}` | `OCIREGISTRY_{field.name.upper()}` |"
            assert row in readme, f"README's settings table lacks {field.name}"
    assert "`deploy/nginx-ociregistry.conf`" in readme
    assert (DOCS.parents[1] / "deploy" / "nginx-ociregistry.conf").is_file()
    assert "AbortIncompleteMultipartUpload" in readme
    assert "ociregistry storage copy --to s3://BUCKET/PREFIX" in readme
    assert "Moving to object storage" in readme
