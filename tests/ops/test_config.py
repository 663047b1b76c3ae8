"""Settings: defaults, then the TOML file, then OCIREGISTRY_* variables, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from ociregistry.config import ConfigError, Settings


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text('port = 6000\nworkers = 3\npublic_address = "reg.example.com"\n')
    return path


def test_file_overrides_defaults(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCIREGISTRY_PORT", raising=False)
    settings = Settings.load(config_file)
    assert (settings.port, settings.workers, settings.public_address) == (
        6000,
        3,
        "reg.example.com",
    )
    assert settings.host == "127.0.0.1" and settings.upload_expiry_seconds == 86400


def test_environment_overrides_file_and_flags_override_both(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCIREGISTRY_PORT", "7000")
    monkeypatch.setenv("OCIREGISTRY_ACCESS_LOG", "off")
    assert Settings.load(config_file).port == 7000
    assert Settings.load(config_file).access_log is False
    assert Settings.load(config_file, port=8000).port == 8000


def test_workers_get_the_same_settings(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` hands its settings to the worker processes through the environment."""
    settings = Settings.load(config_file, port=8123, data_dir="/srv/registry")
    for name, value in settings.to_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings.load() == settings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "unknown setting(s): prot"),
        ('port = "many"\n', "setting port has an invalid value"),
        ("access_log = 3\n", "setting access_log has an invalid value"),
        ("port = [\n", "cannot read config file"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.load(path)
