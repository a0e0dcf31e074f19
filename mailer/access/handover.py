"""Issues handed over by the upstream pipeline (``POST /api/v1/issues``), kept by key.

The key is the parsed issue's content hash (``Issue.key()``), the same key a campaign of it
carries, so the same text posted twice (or a retry) is one row and one answer. The text is
kept as it came; the entrances parse it again when they use it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailer.access.models import HandedIssue
from mailer.errors import NotFoundError
from subscribers.pg_options import insert_for

__all__ = ["is_kept", "issue_text", "keep_issue"]


def keep_issue(sessions: sessionmaker[Session], key: str, text: str, *, by: str) -> bool:
    """Keep the text under ``key``; True when it is new, False when the key was kept
    already (also when the same issue is posted twice at once: the database decides)."""
    with sessions.begin() as s:
        insert_of = insert_for(s)
        stmt = (
            insert_of(HandedIssue)
            .values(key=key, text=text, created_by=by[:64])
            .on_conflict_do_nothing()
            .returning(HandedIssue.key)
        )
        return s.scalar(stmt) is not None


def is_kept(session: Session, key: str) -> bool:
    """Whether a text is kept under ``key``."""
    return session.get(HandedIssue, key) is not None


def issue_text(session: Session, key: str) -> str:
    """The text kept under ``key``; NotFoundError when none is."""
    text = session.scalar(select(HandedIssue.text).where(HandedIssue.key == key))
    if text is None:
        raise NotFoundError(f"no issue {key}; POST its text to /api/v1/issues first")
    return text
