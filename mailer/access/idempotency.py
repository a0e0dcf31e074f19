"""First answers of requests sent with an ``Idempotency-Key`` header.

The answer is written in the same transaction as the change it reports (the API passes
:func:`record_answer` to ``publish.create``): a retry after a dropped connection finds it and
gets it back, and of two retries racing each other the unique (token, key) index lets one
write; the other fails, rolls its change back and reads the winner's answer. A key is
bound to its request by a fingerprint, so the same key with another body is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailer.access.models import IdempotentAnswer
from mailer.errors import InputError
from subscribers.models import utcnow

__all__ = ["Answer", "check_key", "find_answer", "fingerprint", "record_answer"]

#: printable ASCII, no spaces, 1-255 characters (what the IETF draft and Stripe accept)
KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
#: how long an answer is kept for retries
KEEP = timedelta(days=7)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    fingerprint: str


def check_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise InputError("Idempotency-Key: use 1-255 printable ASCII characters without spaces")
    return key


def fingerprint(method: str, path: str, payload: Any) -> str:
    """SHA-256 of the request as understood (canonical JSON of the parsed body)."""
    canonical = json.dumps([method.upper(), path, payload], sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def find_answer(session: Session, principal: str, key: str) -> Answer | None:
    row = session.scalar(
        select(IdempotentAnswer).where(
            IdempotentAnswer.principal == principal, IdempotentAnswer.key == key
        )
    )
    if row is None:
        return None
    return Answer(row.status, dict(row.body), row.fingerprint)


def record_answer(
    session: Session,
    principal: str,
    key: str,
    answer: Answer,
    *,
    now: datetime | None = None,
) -> None:
    """Insert the answer (flushed now: a key taken meanwhile raises IntegrityError here,
    inside the caller's transaction, which then rolls its change back). The token's answers
    older than :data:`KEEP` go: a retry comes within minutes, and a late one still meets
    the one-live-campaign rule (409), never a second campaign."""
    now = now or utcnow()
    session.execute(
        delete(IdempotentAnswer).where(
            IdempotentAnswer.principal == principal, IdempotentAnswer.created_at < now - KEEP
        )
    )
    session.add(
        IdempotentAnswer(
            principal=principal,
            key=key,
            fingerprint=answer.fingerprint,
            status=answer.status,
            body=answer.body,
            created_at=now,
        )
    )
    session.flush()
