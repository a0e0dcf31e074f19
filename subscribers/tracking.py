"""Who may be tracked: each list's ``track`` setting and each reader's opt-out (issue 16).

Tracking is off unless a list asks for it (``mailer lists set SLUG --track clicks,opens``),
and a reader who opts out on the preferences page is never recorded again, on any list;
opting out also deletes what was recorded of them before (the events live in
``mailer.feedback.tracking``, whose intake reads :func:`opted_out_among`). The store knows
only these two settings, not the events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mailer.errors import InputError
from subscribers.models import Base, BigId, UTCDateTime, utcnow

__all__ = [
    "ListTracking",
    "Track",
    "TrackingOptOut",
    "is_opted_out",
    "opted_out_among",
    "parse_track",
    "set_opt_out",
    "set_tracking",
    "tracking_of",
]

KINDS = ("clicks", "opens")


class ListTracking(Base):
    """A list's ``track`` setting; no row means nothing is tracked."""

    __tablename__ = "list_tracking"

    list_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("mailing_lists.id", ondelete="CASCADE"), primary_key=True
    )
    clicks: Mapped[bool] = mapped_column(Boolean, default=False)
    opens: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrackingOptOut(Base):
    """A reader who said no to tracking (preferences page): covers every list."""

    __tablename__ = "tracking_optouts"

    subscriber_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


@dataclass(frozen=True, slots=True)
class Track:
    """What a list tracks."""

    clicks: bool = False
    opens: bool = False

    @property
    def any(self) -> bool:
        return self.clicks or self.opens

    def describe(self) -> str:
        """'clicks,opens', 'clicks', 'opens' or 'off' (what `--track` takes back)."""
        on = [k for k, v in zip(KINDS, (self.clicks, self.opens), strict=True) if v]
        return ",".join(on) or "off"


def parse_track(text: str) -> Track:
    """``clicks``, ``opens``, ``clicks,opens`` or ``off`` (also '' and ``none``)."""
    words = {w.strip().lower() for w in text.split(",") if w.strip()}
    if not words or words <= {"off", "none"}:
        return Track()
    unknown = sorted(words - set(KINDS))
    if unknown:
        raise InputError(
            f"track: unknown value(s) {', '.join(map(repr, unknown))} "
            "(use clicks, opens, clicks,opens or off)"
        )
    return Track(clicks="clicks" in words, opens="opens" in words)


def tracking_of(session: Session, list_id: int) -> Track:
    row = session.get(ListTracking, list_id)
    return Track(row.clicks, row.opens) if row is not None else Track()


def set_tracking(session: Session, list_id: int, track: Track) -> bool:
    """Store the list's setting; True when it changed."""
    row = session.get(ListTracking, list_id)
    if row is None:
        if not track.any:
            return False
        session.add(ListTracking(list_id=list_id, clicks=track.clicks, opens=track.opens))
        return True
    if (row.clicks, row.opens) == (track.clicks, track.opens):
        return False
    row.clicks, row.opens, row.updated_at = track.clicks, track.opens, utcnow()
    return True


def is_opted_out(session: Session, subscriber_id: int) -> bool:
    return session.get(TrackingOptOut, subscriber_id) is not None


def set_opt_out(session: Session, subscriber_id: int, out: bool) -> bool:
    """Opt the reader out of (or back into) tracking; True when it changed. The caller
    deletes their recorded events in the same transaction (``mailer.feedback.tracking``)."""
    if out:
        if is_opted_out(session, subscriber_id):
            return False
        session.add(TrackingOptOut(subscriber_id=subscriber_id))
        session.flush()
        return True
    result = session.execute(
        delete(TrackingOptOut).where(TrackingOptOut.subscriber_id == subscriber_id)
    )
    return bool(getattr(result, "rowcount", 0))


def opted_out_among(session: Session, subscriber_ids: Iterable[int]) -> set[int]:
    """Which of these readers opted out (one query, for a batch of events)."""
    ids = sorted(set(subscriber_ids))
    if not ids:
        return set()
    rows = session.scalars(
        select(TrackingOptOut.subscriber_id).where(TrackingOptOut.subscriber_id.in_(ids))
    )
    return set(rows)
