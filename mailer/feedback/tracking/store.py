"""Writing hits as ``tracking_events`` rows: classify, keep, flag bursts.

:func:`write_hits` runs inside the intake's shared transaction (a batch of hits from many
requests) and inside the SES rules (one open or click event). A hit whose delivery is gone,
belongs to another campaign, or whose reader opted out of tracking is not recorded (None);
every other hit is kept, whatever its verdict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailer.feedback.tracking.classify import (
    Hit,
    Thresholds,
    burst_reason,
    classify,
    in_bursts,
)
from mailer.feedback.tracking.models import CLICK, HUMAN, MACHINE, OPEN, TrackingEvent
from mailer.render.tracking import Link, link_table
from mailer.sending.models import Campaign, Delivery
from subscribers.tracking import opted_out_among

__all__ = ["LinkTables", "forget_subscriber", "write_hits"]

LinksOf = Callable[[Session, int], tuple[Link, ...]]


class LinkTables:
    """Each campaign's link table, read once from its stored issue (which never changes)."""

    def __init__(self) -> None:
        self._tables: dict[int, tuple[Link, ...]] = {}

    def cached(self, campaign_id: int) -> tuple[Link, ...] | None:
        """The table if it was read already (no database: the redirect's fast path)."""
        return self._tables.get(campaign_id)

    def __call__(self, session: Session, campaign_id: int) -> tuple[Link, ...]:
        table = self._tables.get(campaign_id)
        if table is None:
            issue = session.scalar(select(Campaign.issue).where(Campaign.id == campaign_id))
            table = link_table(issue) if isinstance(issue, dict) else ()
            if len(self._tables) > 1000:
                self._tables.clear()
            self._tables[campaign_id] = table
        return table


def _agent(user_agent: str) -> tuple[str, str]:
    if not user_agent:
        return "", ""
    digest = hashlib.sha256(user_agent.encode("utf-8", "replace")).hexdigest()[:16]
    return digest, user_agent[:80]


def write_hits(
    session: Session, hits: Sequence[Hit], thresholds: Thresholds, links_of: LinksOf
) -> list[int | None]:
    """One row per hit (its id), or None for a hit that is not recorded (see above)."""
    ids = {hit.delivery_id for hit in hits}
    rows = {
        row.id: row
        for row in session.execute(
            select(
                Delivery.id, Delivery.campaign_id, Delivery.subscriber_id, Delivery.sent_at
            ).where(Delivery.id.in_(sorted(ids)))
        )
    }
    opted = opted_out_among(session, (r.subscriber_id for r in rows.values() if r.subscriber_id))
    events: list[TrackingEvent | None] = []
    for hit in hits:
        row = rows.get(hit.delivery_id)
        links = links_of(session, hit.campaign_id) if row is not None else ()
        if (
            row is None
            or row.campaign_id != hit.campaign_id
            or row.subscriber_id in opted
            or (hit.link is not None and not 0 <= hit.link < len(links))
        ):
            events.append(None)
            continue
        trap = hit.link is not None and links[hit.link].trap
        verdict, reason = classify(hit, sent_at=row.sent_at, trap=trap, thresholds=thresholds)
        digest, short = _agent(hit.user_agent)
        event = TrackingEvent(
            campaign_id=hit.campaign_id,
            delivery_id=hit.delivery_id,
            subscriber_id=row.subscriber_id,
            kind=OPEN if hit.link is None else CLICK,
            link=hit.link,
            at=hit.at,
            source=hit.source,
            verdict=verdict,
            reason=reason,
            method=hit.method.upper()[:8],
            ua_digest=digest,
            ua=short,
        )
        session.add(event)
        events.append(event)
    session.flush()
    _flag_bursts(session, [e for e in events if e is not None], thresholds, links_of)
    return [e.id if e is not None else None for e in events]


def _flag_bursts(
    session: Session, new: list[TrackingEvent], thresholds: Thresholds, links_of: LinksOf
) -> None:
    """Human clicks that, with the message's other clicks, make a burst become machine."""
    fresh = [e for e in new if e.kind == CLICK and e.verdict == HUMAN]
    if not fresh:
        return
    window = timedelta(seconds=thresholds.burst_window)
    since = min(e.at for e in fresh) - window
    until = max(e.at for e in fresh) + window
    deliveries = sorted({e.delivery_id for e in fresh})
    clicks = session.scalars(
        select(TrackingEvent).where(
            TrackingEvent.delivery_id.in_(deliveries),
            TrackingEvent.kind == CLICK,
            TrackingEvent.at >= since,
            TrackingEvent.at <= until,
        )
    ).all()
    by_delivery: dict[int, list[TrackingEvent]] = {}
    for click in clicks:
        by_delivery.setdefault(click.delivery_id, []).append(click)
    for group in by_delivery.values():
        links = links_of(session, group[0].campaign_id)
        real = [c for c in group if c.link is not None and not links[c.link].trap]
        count = sum(1 for link in links if not link.trap)
        burst = in_bursts([(c.at, c.link or 0) for c in real], count, thresholds)
        for n in burst:
            click = real[n]
            if click.verdict == HUMAN:
                click.verdict = MACHINE
                click.reason = burst_reason(len({real[m].link for m in burst}), thresholds)
    session.flush()


def forget_subscriber(session: Session, subscriber_id: int) -> int:
    """Delete every event recorded of a reader (opt-out); how many."""
    result = session.execute(
        delete(TrackingEvent).where(TrackingEvent.subscriber_id == subscriber_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)
