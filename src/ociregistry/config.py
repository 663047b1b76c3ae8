"""Settings: defaults, then a TOML config file, then OCIREGISTRY_* environment variables, then
command-line flags, each overriding the one before.

The `serve` command resolves the settings once and hands them to its worker processes through
the environment, so every worker runs with exactly the same configuration.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "OCIREGISTRY_"
DEFAULT_PORT = 5000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_DATA_DIR = "./data"
DEFAULT_UPLOAD_EXPIRY_SECONDS = 24 * 3600


def _default_workers() -> int:
    return max(2, min(os.cpu_count() or 2, 8))


class ConfigError(Exception):
    """A setting has a value the registry cannot use; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = dataclasses.field(default_factory=_default_workers)
    data_dir: str = DEFAULT_DATA_DIR
    database_url: str = ""  # empty: SQLite in the data folder
    public_address: str = ""  # host[:port] shown in pull commands; empty: the request's Host
    upload_expiry_seconds: int = DEFAULT_UPLOAD_EXPIRY_SECONDS
    access_log: bool = True
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-For is believed
    log_level: str = "info"
    admin_password: str = ""  # first start only; empty: generate one and print it once
    anonymous_access: bool = True  # anonymous view and pull of public and platform images
    token_service: str = "ociregistry"  # the `service` of token auth, and the tokens' audience
    token_ttl_seconds: int = 300
    login_max_failures: int = 10  # failed sign-ins before an account or address is blocked
    login_block_seconds: int = 300
    pull_counting: bool = True
    registry_count_refresh_seconds: int = 900  # how often registry pull counts are summed
    gc_interval_seconds: int = 6 * 3600  # garbage collection of unreferenced blobs; 0: never
    gc_grace_seconds: int = 3600  # blobs younger than this are never collected
    # Storage governance (issue 14)
    default_registry_quota_bytes: int = 0  # the quota of each new registry; 0: none
    audit_log_retention_days: int = 90  # audit events older than this go; 0: kept forever

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def storage_path(self) -> Path:
        return self.data_path / "storage"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_path / 'registry.db'}"

    @classmethod
    def load(
        cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any
    ) -> Settings:
        values: dict[str, Any] = {}
        if config_file:
            try:
                with open(config_file, "rb") as file:
                    values.update(tomllib.load(file))
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise ConfigError(f"cannot read config file {config_file}: {error}") from None
        values.update(_from_environment())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._build(values)

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Settings:
        known = {field.name: field for field in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        converted = {}
        for name, value in values.items():
            kind = known[name].type
            converted[name] = _convert(name, value, kind)
        return cls(**converted)

    def to_environment(self) -> dict[str, str]:
        """The settings as environment variables, for the worker processes."""
        return {
            ENV_PREFIX + field.name.upper(): str(getattr(self, field.name))
            for field in fields(self)
        }


def _from_environment() -> dict[str, str]:
    names = {field.name for field in fields(Settings)}
    found = {}
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX):].lower()
            if name in names:
                found[name] = value
    return found


def _convert(name: str, value: Any, kind: Any) -> Any:
    kind = str(kind)
    try:
        if kind == "int":
            return int(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name} has an invalid value {value!r}") from None
