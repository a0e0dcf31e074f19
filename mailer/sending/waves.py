"""Waves: each reader's row released at their local morning (``mailer send --at-local``).

A campaign sent ``--at-local 06:00`` is one campaign and one ledger: every Delivery row
carries ``release_at``, the first 06:00 in the reader's zone (else the list's, else UTC) at
or after the campaign's start (``--at``, else now). Rows wait in the database, not in a
process: a claim takes only released rows (:mod:`mailer.sending.ledger`), a worker runs the
campaign only while a row is due (:func:`mailer.sending.campaigns.runnable`), and a row not
sent ``wave_expiry`` seconds after its own release is skipped as expired, not the campaign.

Releases are computed per distinct zone (a few dozen), never per reader: the enqueue of a
million readers is one INSERT ... SELECT with a CASE over the zones (issue 15's goal:
<= 30 s on PostgreSQL). A local time a DST change skips (02:30 on a spring-forward night)
is taken with the offset before the change, i.e. that much later in wall time; one it
repeats, its first occurrence (``zoneinfo``'s fold=0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, ScalarSelect, Select, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from mailer.sending.models import Campaign, Delivery, DeliveryStatus
from subscribers.models import Subscriber, UTCDateTime

log = logging.getLogger(__name__)

#: the error of a row whose wave passed its expiry unsent
WAVE_EXPIRED = "its wave was not sent within --expires-after of its release"


def release_at(at_local: str, zone: ZoneInfo, start: datetime) -> datetime:
    """The first ``at_local`` in ``zone`` at or after ``start`` (UTC). A send at 07:00 UTC
    with 06:00 gives London tomorrow 06:00, and Shanghai (15:00 local) tomorrow too."""
    hour, minute = (int(x) for x in at_local.split(":"))
    local = start.astimezone(zone)
    for days in (0, 1, 2):  # 2: a DST change may put "tomorrow 06:00" before start + 1 day
        day = local.date() + timedelta(days=days)
        candidate = datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)
        if candidate >= start:
            return candidate
    raise AssertionError("unreachable: a local time recurs within two days")


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # the inputs check zones; never lose a reader
        log.warning("reader time zone %r unknown here; using the list's", name)
        return fallback


@dataclass(frozen=True)
class Plan:
    """Each zone's release (``None``: readers without a zone, at the list's) for one send."""

    at_local: str
    list_zone: str
    releases: dict[str | None, datetime]

    @property
    def first(self) -> datetime | None:
        return min(self.releases.values(), default=None)

    def waves(self) -> list[dict[str, Any]]:
        """``[{"at": ISO UTC, "zones": [...]}]`` by time: what ``campaigns.waves`` keeps.
        The readers without a zone of their own are listed as ``<list zone> (list)``."""
        by_time: dict[datetime, list[str]] = {}
        for zone, at in self.releases.items():
            by_time.setdefault(at, []).append(zone or f"{self.list_zone} (list)")
        return [{"at": at.isoformat(), "zones": sorted(by_time[at])} for at in sorted(by_time)]

    def release_column(self) -> ColumnElement[datetime]:
        """The row's release in SQL: a CASE over the reader's zone, the list's zone's release
        for readers with none (or one the CASE does not name: set after the plan)."""
        default = bindparam("release_default", self.releases[None], type_=UTCDateTime())
        named = {z: at for z, at in self.releases.items() if z is not None}
        if not named:
            return default
        whens = {
            zone: bindparam(f"release_{i}", at, type_=UTCDateTime())
            for i, (zone, at) in enumerate(sorted(named.items()))
        }
        return case(whens, value=Subscriber.time_zone, else_=default)


def plan(
    session: Session,
    readers: Select[Any],
    at_local: str,
    list_zone: str | None,
    start: datetime,
) -> Plan:
    """The release of every zone among ``readers`` (a select of ``Subscription.subscriber_id``
    joined to ``Subscriber``): one DISTINCT query, then zoneinfo per zone."""
    fallback = _zone(list_zone, ZoneInfo("UTC"))
    list_zone = list_zone if fallback.key == list_zone else "UTC"
    zones = session.scalars(readers.with_only_columns(Subscriber.time_zone).distinct())
    releases: dict[str | None, datetime] = {None: release_at(at_local, fallback, start)}
    for name in zones:
        if name:
            releases[name] = release_at(at_local, _zone(name, fallback), start)
    return Plan(at_local, list_zone, releases)


# -- while it sends ------------------------------------------------------------------------


def expire_waves(session: Session, campaign: Campaign, now: datetime) -> int:
    """Rows of a wave ``wave_expiry`` seconds past its release at ``now`` are skipped as
    expired (that wave's late readers, not the campaign). Returns how many. Rows in flight
    too, as a campaign's expiry skips them (lifecycle.expire): a dead worker's would
    otherwise be claimed again and sent hours late; a live worker's answer still records
    what happened to its rows (the result writes are fenced on the claim, not the status)."""
    if not campaign.at_local or not campaign.wave_expiry:
        return 0
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.campaign_id == campaign.id,
            Delivery.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.SENDING)),
            Delivery.release_at.is_not(None),
            Delivery.release_at <= now - timedelta(seconds=campaign.wave_expiry),
        )
        .values(status=DeliveryStatus.SKIPPED, error_class="Expired", error=WAVE_EXPIRED)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def first_queued_release(campaign_id: Any) -> ScalarSelect[datetime | None]:
    """The earliest release among the campaign's queued rows (NULL when none is queued): a
    min() the planner answers from the first entry of ``ix_deliveries_campaign_release``.
    (An EXISTS for "a queued row released by now" was planned as a sequential scan once the
    statistics were stale, and read every row when none matched: 0.8 s at 1M readers.)"""
    return (
        select(func.min(Delivery.release_at))
        .where(
            Delivery.campaign_id == campaign_id,
            Delivery.status == DeliveryStatus.QUEUED,
            Delivery.release_at.is_not(None),
        )
        .scalar_subquery()
    )


def first_in_flight(campaign_id: Any) -> ScalarSelect[int | None]:
    """The lowest id of the campaign's rows in flight (NULL when none is), by the same
    min() on ``ix_deliveries_campaign_status``."""
    return (
        select(func.min(Delivery.id))
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENDING)
        .scalar_subquery()
    )


def next_release(session: Session, campaign_id: int, now: datetime) -> datetime | None:
    """When a wave campaign's next queued row is released, if after ``now`` and nothing is
    in flight; None when a row is released by now, in flight, or none is left. (Every row of
    a wave campaign has a release: rows without one are not looked at.)"""
    first, flight = session.execute(
        select(first_queued_release(campaign_id), first_in_flight(campaign_id))
    ).one()
    if flight is not None or first is None or first <= now:
        return None
    return first


# -- what the reports show -----------------------------------------------------------------


@dataclass(frozen=True)
class Wave:
    """One release time of a campaign: its zones and its rows by state."""

    at: datetime
    zones: tuple[str, ...]
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "release_at": self.at.isoformat(),
            "zones": list(self.zones),
            "counts": {s.value: self.counts.get(s.value, 0) for s in DeliveryStatus},
        }


def campaign_waves(session: Session, campaign: Campaign) -> list[Wave]:
    """The campaign's waves with their rows by state (empty for a send at once)."""
    if not campaign.at_local:
        return []
    rows = session.execute(
        select(Delivery.release_at, Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign.id, Delivery.release_at.is_not(None))
        .group_by(Delivery.release_at, Delivery.status)
    )
    counts: dict[datetime, dict[str, int]] = {}
    for at, status, n in rows:
        if at is not None:
            counts.setdefault(at, {})[status] = n
    zones = {datetime.fromisoformat(w["at"]): tuple(w["zones"]) for w in campaign.waves or []}
    return [Wave(at, zones.get(at, ()), counts.get(at, {})) for at in sorted(counts.keys() | zones)]
