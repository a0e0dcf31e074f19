"""Where a pasted issue lives between the desk's steps: the table the API keeps handed-over
issues in (``api_issues``, :class:`mailer.access.models.HandedIssue`), by the issue's key.

The pages then carry only the key (no issue text in hidden fields or cookies), and an
issue posted through ``POST /api/v1/issues`` opens on the desk by the same key. Each step
parses the stored text again, so every step sees exactly the issue that was checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailer.access import handover
from mailer.access.handover import issue_text, keep_issue
from mailer.access.models import HandedIssue
from mailer.errors import IssueParseError, NotFoundError
from mailer.issue.files import parse_issue_text
from mailer.issue.markdown import declared_list
from mailer.issue.model import Issue

__all__ = ["KEY", "Recent", "Stored", "is_kept", "keep", "load", "recent"]

KEY = re.compile(r"^[0-9a-f]{64}$")
SOURCE = "pasted issue"


@dataclass(frozen=True)
class Stored:
    key: str
    text: str
    issue: Issue
    declared_list: str | None


def parse(text: str) -> Stored:
    """Parse pasted text (IssueParseError names the line); the key is the issue's own."""
    issue = parse_issue_text(text, source=SOURCE)
    return Stored(issue.key(), text, issue, declared_list(text, source=SOURCE))


def keep(sessions: sessionmaker[Session], stored: Stored, by: str) -> bool:
    """Store the text under its key once; the same issue pasted again keeps the first text
    (True when it is new)."""
    return keep_issue(sessions, stored.key, stored.text, by=by)


def load(sessions: sessionmaker[Session], key: str) -> Stored:
    """The stored issue by key, parsed; NotFoundError (404) for an unknown or malformed key."""
    if not KEY.match(key):
        raise NotFoundError("no such issue")
    with sessions() as s:
        text = issue_text(s, key)
    return parse(text)


def is_kept(sessions: sessionmaker[Session], key: str) -> bool:
    """Whether the issue's text is here (a campaign sent from the CLI has none)."""
    with sessions() as s:
        return handover.is_kept(s, key)


@dataclass(frozen=True)
class Recent:
    """A kept issue as the paste page lists it."""

    key: str
    subject: str
    by: str
    at: datetime


def recent(sessions: sessionmaker[Session], limit: int = 10) -> list[Recent]:
    """The newest kept issues (pasted here or posted to the API), newest first."""
    with sessions() as s:
        rows = s.execute(
            select(
                HandedIssue.key, HandedIssue.text, HandedIssue.created_by, HandedIssue.created_at
            )
            .order_by(HandedIssue.created_at.desc())
            .limit(limit)
        ).all()
    out = []
    for key, text, by, at in rows:
        try:
            subject = parse(text).issue.subject
        except IssueParseError:  # kept by an older parser that read it differently
            subject = "(no longer reads as an issue)"
        out.append(Recent(key, subject, by, at))
    return out
