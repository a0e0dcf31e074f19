"""When a campaign starts, when it is too late, and whether it may repeat an issue.

One small value (:class:`Schedule`) instead of three loose keyword arguments, read from an
entrance's text (``--at``, ``--expires-after``) by one parser that every entrance shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from mailer.config import parse_duration
from mailer.errors import InputError
from subscribers.models import utcnow

#: How far in the past ``--at`` may be and still mean "now": a time typed a minute before
#: pressing Enter. Anything older is a typo (a wrong year or day), refused, never sent at once.
PAST_GRACE = timedelta(minutes=5)
#: How far ahead a start or an expiry may be: further is a typo (a daily brief is not planned
#: a year ahead), and a span of "99999999999d" is no time span at all.
MAX_AHEAD = timedelta(days=366)
_BARE_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")


@dataclass(frozen=True)
class Wording:
    """How an entrance names the fields in a refusal (the CLI's options by default; an
    empty ``at`` puts no field name before the sentence)."""

    at: str = "--at"
    expires_after: str = "--expires-after"
    send_now: str = "To send now, leave out --at"


@dataclass(frozen=True)
class Schedule:
    """``at`` None: now. ``expires_at``: unsent readers are skipped from then on (a daily
    brief must not go out a day late). ``force``: send an issue the list already has.

    ``at_local`` ("06:00", ``--at-local``): each reader's row is released at that local time
    in their zone, the first at or after ``at`` (else now) (mailer.sending.waves); then
    ``expires_at`` is None and ``wave_expiry`` counts from each row's own release."""

    at: datetime | None = None
    expires_at: datetime | None = None
    force: bool = False
    at_local: str | None = None
    wave_expiry: timedelta | None = None

    @classmethod
    def parse(
        cls,
        at: str | None = None,
        expires_after: str | None = None,
        *,
        force: bool = False,
        now: datetime | None = None,
        at_local: str | None = None,
    ) -> Schedule:
        """From an editor's text; ``expires_after`` counts from the start (``at`` or now),
        or with ``at_local`` from each reader's own release."""
        now = now or utcnow()
        local = parse_at_local(at_local) if at_local is not None else None
        start = parse_when(at, now) if at else None
        span = parse_span("--expires-after", expires_after) if expires_after else None
        checked = cls.checked(start, span, force=force, now=now, text=at)
        return checked if local is None else checked.in_waves(local, span)

    def in_waves(self, at_local: str, span: timedelta | None) -> Schedule:
        """This checked schedule sent in waves at ``at_local`` (already read by
        :func:`parse_at_local`): no campaign-wide expiry; ``span`` counts from each wave."""
        return replace(self, expires_at=None, at_local=at_local, wave_expiry=span)

    @classmethod
    def checked(
        cls,
        start: datetime | None,
        span: timedelta | None,
        *,
        force: bool = False,
        now: datetime,
        wording: Wording | None = None,
        text: str | None = None,
    ) -> Schedule:
        """The one rule for every entrance (CLI, API, desk): a start not gone by (beyond
        PAST_GRACE) and not beyond MAX_AHEAD; an expiry span more than 0 and at most
        MAX_AHEAD, counted from the start (or now). ``text``: the start as the editor typed it,
        quoted in a refusal."""
        words = wording or Wording()
        prefix = f"{words.at}: " if words.at else ""
        if start is not None and start < now - PAST_GRACE:
            shown = repr(text) if text else "the start time"
            raise InputError(
                f"{prefix}{shown} is {_ago(now - start)} ago ({start:%Y-%m-%d %H:%M} UTC): it "
                f"has passed, and a time in the past is refused unless within "
                f"{_ago(PAST_GRACE)} of now. {words.send_now}"
            )
        if start is not None and start > now + MAX_AHEAD:
            raise InputError(f"{prefix}the start time is more than {MAX_AHEAD.days} days away")
        if span is not None and not timedelta(0) < span <= MAX_AHEAD:
            raise InputError(_span_refused(words.expires_after, span))
        expires = (start or now) + span if span is not None else None
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
            return now + parse_span("--at", rel.group(1))
        when = datetime.fromisoformat(text.strip())
        return (when if when.tzinfo else when.astimezone()).astimezone(UTC)
    except ValueError as err:
        raise InputError(
            f"--at: cannot read {text!r} (use e.g. 2026-11-29T06:00+08:00 or +2h)"
        ) from err
    except OverflowError as err:  # 9999-12-31T23:59-08:00: past the last datetime in UTC
        raise InputError(f"--at: {text!r} is out of range") from err


def parse_span(option: str, text: str) -> timedelta:
    """A duration such as ``6h``; a bad one is an InputError naming ``option``. A bare
    number is refused: ``--expires-after 6`` meant hours, not the seconds it would be."""
    if _BARE_NUMBER.match(text):
        n = text.strip()
        raise InputError(f"{option}: {n!r} has no unit: write {n}m, {n}h or {n}d (or {n}s)")
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as err:
        raise InputError(f"{option}: {err}") from err
    except OverflowError as err:  # "99999999999d": a number, but no span a datetime can hold
        raise InputError(_span_refused(option, MAX_AHEAD * 2)) from err


def _span_refused(option: str, span: timedelta) -> str:
    what = "0" if span <= timedelta(0) else f"more than {MAX_AHEAD.days} days"
    return f"{option}: {what} must be more than 0 and at most {MAX_AHEAD.days} days"


def _ago(span: timedelta) -> str:
    """A span in its largest whole unit: '5 minutes', '3 days', '6 years'."""
    seconds = int(span.total_seconds())
    for unit, size in (("year", 365 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


_HH_MM = re.compile(r"(\d{1,2}):(\d{2})", re.ASCII)


def parse_at_local(text: str, what: str = "--at-local") -> str:
    """``--at-local``: a 24-hour local time ``HH:MM`` ('6:00' is read as '06:00'). One rule
    for every entrance; ``what`` names the field in a refusal (the API's ``at_local``)."""
    m = _HH_MM.fullmatch(text.strip())
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise InputError(
            f"{what}: {text[:40]!r} is not a time of day: write HH:MM, 24-hour (e.g. 06:00)"
        )
    return f"{int(m.group(1)):02d}:{m.group(2)}"
