"""The upload session as a database row: what lets any worker or instance take the next chunk.

The row is also the lock. A request claims it by compare-and-set (`writer` empty or stale,
`received` what the request expects), writes its chunk, and advances `received`, the storage state
and the hash state in one update that only the claimant can make. A second request racing on
the same session finds the claim taken and gets a clean error; a request that fails releases
the claim and leaves the row as it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ociregistry.db.models import Base, utcnow


class UploadRow(Base):
    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the UUID in the URL
    repository: Mapped[str] = mapped_column(String(255))
    received: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes received: the offset
    parts: Mapped[int] = mapped_column(Integer, default=0)  # multipart parts written
    staged: Mapped[int] = mapped_column(Integer, default=0)  # bytes of the tail not yet a part
    storage_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    hash_state: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    active_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    writer: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the claim
    writer_since: Mapped[datetime | None] = mapped_column(nullable=True)
