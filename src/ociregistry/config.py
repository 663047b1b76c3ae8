"""Settings: defaults, then a TOML config file, then OCIREGISTRY_* environment variables, then
command-line flags, each overriding the one before.

The `serve` command resolves the settings once and hands them to its worker processes through
the environment, so every worker runs with exactly the same configuration.
"""

from __future__ import annotations

import dataclasses
import os
import re
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
    storage: str = "filesystem"  # where blobs live: filesystem (under data_dir), memory, s3://…
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
    upload_purge_interval_seconds: int = 3600  # how often abandoned uploads are purged
    job_lease_seconds: int = 120  # a background job's lease; a killed holder's lapses after it
    retention_check_seconds: int = 60  # how often retention schedules are looked at (0: never)
    # Operations: logs, metrics, stopping.
    log_format: str = "text"  # text, or json: one JSON object per line, the access log included
    metrics_token: str = ""  # when set, /metrics wants `Authorization: Bearer <token>`
    shutdown_timeout_seconds: int = 30  # how long requests in flight may take after SIGTERM
    shutdown_delay_seconds: int = 0  # after SIGTERM, /readyz says 503 this long before closing
    # Blobs in S3 (`storage = s3://BUCKET[/PREFIX]`, README "Blobs in object storage").
    # Credentials come from the standard AWS chain only, never from here.
    s3_endpoint_url: str = ""  # empty: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS
    s3_region: str = ""  # empty: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
    s3_redirect: bool = True  # blob GET answers 307 to a presigned URL
    s3_redirect_ttl_seconds: int = 1200  # how long a presigned blob URL stays valid
    # Storage governance (issue 14)
    default_registry_quota_bytes: int = 0  # the quota of each new registry; 0: none
    audit_log_retention_days: int = 90  # audit events older than this go; 0: kept forever

    def __post_init__(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"setting log_format must be text or json, not {self.log_format!r}")
        if self.shutdown_timeout_seconds < 0 or self.shutdown_delay_seconds < 0:
            raise ConfigError("the shutdown_* settings cannot be negative")

    @classmethod
    def load_with_sources(
        cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any
    ) -> tuple[Settings, dict[str, str]]:
        """The settings as `load` makes them, and where each one came from: `default`, `file`,
        `environment` or `flag` (what `ociregistry config show` prints)."""
        settings = cls.load(config_file, **overrides)
        sources = {field.name: "default" for field in fields(cls)}
        if config_file:
            with open(config_file, "rb") as file:
                sources.update(dict.fromkeys(tomllib.load(file), "file"))
        sources.update(dict.fromkeys(_from_environment(), "environment"))
        sources.update({k: "flag" for k, v in overrides.items() if v is not None})
        return settings, sources

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

    @property
    def s3_bucket_and_prefix(self) -> tuple[str, str] | None:
        """`storage = s3://BUCKET[/PREFIX]` taken apart; None for any other storage."""
        if not self.storage.startswith("s3://"):
            return None
        bucket, _, prefix = self.storage.removeprefix("s3://").partition("/")
        return bucket, prefix.strip("/")

    @property
    def resolved_s3_endpoint_url(self) -> str | None:
        """The S3 endpoint: the setting, else the standard AWS variables; None means AWS."""
        return (
            self.s3_endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    @property
    def resolved_s3_region(self) -> str:
        return (
            self.s3_region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
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
        settings = cls(**converted)
        _check_storage(settings)
        return settings

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
            name = key[len(ENV_PREFIX) :].lower()
            if name in names:
                found[name] = value
    return found


# S3's bucket naming rules (3 to 63 lower-case letters, digits, dots and hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()/-]*")


def _check_storage(settings: Settings) -> None:
    location = settings.s3_bucket_and_prefix
    if location is None:
        return
    bucket, prefix = location
    if _BUCKET.fullmatch(bucket) is None:
        raise ConfigError(
            f"setting storage has an invalid bucket name {bucket!r}: "
            "use s3://BUCKET[/PREFIX], BUCKET 3 to 63 of a-z 0-9 . -"
        )
    if _S3_PREFIX.fullmatch(prefix) is None or "//" in prefix:
        raise ConfigError(f"setting storage has an invalid prefix {prefix!r}")
    if settings.s3_redirect_ttl_seconds < 1 or settings.s3_redirect_ttl_seconds > 7 * 86400:
        raise ConfigError("setting s3_redirect_ttl_seconds must be 1 to 604800 (7 days)")


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
