"""Logging for the server and its workers: `log_format = "text"` for people, `"json"` for a
log pipeline, where every line, the access log included, is one JSON object.

A JSON line carries `time` (RFC 3339, UTC), `level`, `logger`, `message`, the `instance` (host
name) and `pid`, and for requests the fields of `access.py`. JSON formatting is
python-json-logger's; this module only names the fields. Nothing here logs a header other than
the user agent, a body or a query string, so no secret reaches a line.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
INSTANCE = socket.gethostname()
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


class RegistryTextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, its time of day formatted once a second instead of on every line: the
    access log writes a line per request, and `strftime` was over a third of what formatting
    one cost. The lines are exactly `logging.Formatter`'s."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:  # the clock's date and time change only between seconds
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


class RegistryJsonFormatter(JsonFormatter):
    """One JSON object a line, with the registry's field names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            "%(message)s",
            static_fields={"instance": INSTANCE},
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = (
            datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        ).replace("+00:00", "Z")
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)
        log_data["pid"] = record.process


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn to apply in the supervisor and every worker:
    all loggers (ours, uvicorn's, SQLAlchemy's) write through one handler to stderr."""
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {"()": f"{__name__}.RegistryJsonFormatter"}
    else:
        formatter = {"()": f"{__name__}.RegistryTextFormatter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"registry": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "registry",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's own handlers would print a second, differently formatted line
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            "alembic": {"level": "WARNING"},
            # "Found credentials in environment variables" and the like: noise at every start.
            "aiobotocore": {"level": "WARNING"},
            "botocore": {"level": "WARNING"},
        },
    }
