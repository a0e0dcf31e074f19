"""When a campaign starts, when it is too late, and whether it may repeat an issue.

One small value (:class:`Schedule`) instead of three loose keyword arguments, read from an
entrance's text (``--at``, ``--expires-after``) by one parser that every entrance shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mailer.config import parse_duration
from mailer.errors import InputError
from subscribers.models import utcnow


@dataclass(frozen=True)
class Schedule:
    """``at`` None: now. ``expires_at``: unsent readers are skipped from then on (a daily
    brief must not go out a day late). ``force``: send an issue the list already has."""

    at: datetime | None = None
    expires_at: datetime | None = None
    force: bool = False

    @classmethod
    def parse(
        cls,
        at: str | None = None,
        expires_after: str | None = None,
        *,
        force: bool = False,
        now: datetime | None = None,
    ) -> Schedule:
        """From an editor's text; ``expires_after`` counts from the start (``at`` or now)."""
        now = now or utcnow()
        start = parse_when(at, now) if at else None
        expires = (
            (start or now) + parse_span("--expires-after", expires_after) if expires_after else None
        )
        return cls(at=start, expires_at=expires, force=force)

    def is_due(self, now: datetime | None = None) -> bool:
        """True when a sender should start now (no time, or a time already passed)."""
        return self.at is None or self.at <= (now or utcnow())


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """'2026-11-29T06:00+08:00', '2026-11-29 06:00' (local time), '+2h', 'in 30m' -> UTC."""
    now = now or utcnow()
    rel = re.match(r"^\s*(?:\+|in\s+)(.+)$", text)
    try:
        if rel:
            return now + timedelta(seconds=parse_duration(rel.group(1)))
        when = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise InputError(
            f"--at: cannot read {text!r} (use e.g. 2026-11-29T06:00+08:00 or +2h)"
        ) from err
    return (when if when.tzinfo else when.astimezone()).astimezone(UTC)


def parse_span(option: str, text: str) -> timedelta:
    """A duration such as ``6h``; a bad one is an InputError naming ``option``."""
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as err:
        raise InputError(f"{option}: {err}") from err
