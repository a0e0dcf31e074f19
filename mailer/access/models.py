"""The tables of :mod:`mailer.access` (migration 0004): API tokens, handed-over issues and
idempotent answers. They join ``subscribers.models.Base`` so one Alembic history covers them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from subscribers.models import NEVER_REUSE_IDS, Base, JSONType, UTCDateTime, utcnow


class Role(enum.StrEnum):
    """``editor``: issues, campaigns, lists (read), adding subscribers. ``ops``: everything,
    including suppressions, erasure and stats."""

    EDITOR = "editor"
    OPS = "ops"


class ApiToken(Base):
    """One named token. Only the SHA-256 of the random token is kept: the token itself is
    shown once, when it is created. A revoked token keeps its row (and its name)."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('editor', 'ops')", name="role"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HandedIssue(Base):
    """An issue file posted to ``POST /api/v1/issues``, kept by its key (the issue's content
    hash, ``Issue.key()``, which is also the campaigns' ``issue_key``): the same text posted
    twice is one row."""

    __tablename__ = "api_issues"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IdempotentAnswer(Base):
    """The first answer to a request with an ``Idempotency-Key`` (per token name), written
    in the transaction that made the change: a retry gets it back instead of a second
    change, and the unique key decides between two retries racing each other."""

    __tablename__ = "api_idempotency"
    __table_args__ = (
        UniqueConstraint("principal", "key", name="uq_api_idempotency_principal_key"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    #: SHA-256 of the request (method, path, body): the same key with another body is refused
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
