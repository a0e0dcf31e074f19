"""Writing hits as ``tracking_events`` rows: classify, keep, flag bursts.

:func:`write_hits` runs inside the intake's shared transaction (a batch of hits from many
requests) and inside the SES rules (one open or click event). A hit whose delivery is gone,
belongs to another campaign, or whose reader opted out of tracking is not recorded (None);
every other hit is kept, whatever its verdict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
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

__all__ = ["LinkTables", "campaign_link", "forget_subscriber", "write_hits"]

LinksOf = Callable[[Session, int], tuple[Link, ...]]
_EVENTS = cast(Table, TrackingEvent.__table__)
#: a burst's clicks re-marked: one statement for every (id, reason) of a batch (one UPDATE
#: per reason, with reasons that name their counts, compiled an IN list per reason)
_FLAG_BURST = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("event_id"))
    .values(verdict=MACHINE, reason=bindparam("burst_reason"))
)


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
) -> list[str | None]:
    """One row per hit, written with one multi-row INSERT; each hit's verdict, or None for
    a hit that is not recorded (see above)."""
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
    values: list[dict[str, object]] = []
    verdicts: list[str | None] = []
    for hit in hits:
        row = rows.get(hit.delivery_id)
        links = links_of(session, hit.campaign_id) if row is not None else ()
        if (
            row is None
            or row.campaign_id != hit.campaign_id
            or row.subscriber_id in opted
            or (hit.link is not None and not 0 <= hit.link < len(links))
        ):
            verdicts.append(None)
            continue
        trap = hit.link is not None and links[hit.link].trap
        verdict, reason = classify(hit, sent_at=row.sent_at, trap=trap, thresholds=thresholds)
        digest, short = _agent(hit.user_agent)
        values.append(
            {
                "campaign_id": hit.campaign_id,
                "delivery_id": hit.delivery_id,
                "subscriber_id": row.subscriber_id,
                "kind": OPEN if hit.link is None else CLICK,
                "link": hit.link,
                "at": hit.at,
                "source": hit.source,
                "verdict": verdict,
                "reason": reason,
                "method": hit.method.upper()[:8],
                "ua_digest": digest,
                "ua": short,
            }
        )
        verdicts.append(verdict)
    if values:
        # Core on the session's connection: no ORM bulk machinery per row (the writer
        # shares the GIL with the redirect's event loop)
        session.connection().execute(insert(_EVENTS), values)
        fresh = [v for v in values if v["kind"] == CLICK and v["verdict"] == HUMAN]
        _flag_bursts(session, fresh, thresholds, links_of)
    return verdicts


def _flag_bursts(
    session: Session,
    fresh: list[dict[str, object]],
    thresholds: Thresholds,
    links_of: LinksOf,
) -> None:
    """Human clicks that, with the message's other clicks, make a burst become machine."""
    if not fresh:
        return
    window = timedelta(seconds=thresholds.burst_window)
    times = [v["at"] for v in fresh if isinstance(v["at"], datetime)]
    deliveries = sorted({int(str(v["delivery_id"])) for v in fresh})
    ev = TrackingEvent
    clicks = (
        session.connection()
        .execute(
            select(ev.id, ev.delivery_id, ev.campaign_id, ev.link, ev.at, ev.verdict).where(
                ev.delivery_id.in_(deliveries),
                ev.kind == CLICK,
                ev.at >= min(times) - window,
                ev.at <= max(times) + window,
            )
        )
        .all()
    )
    by_delivery: dict[int, list[Any]] = {}
    for click in clicks:
        by_delivery.setdefault(click.delivery_id, []).append(click)
    flagged: list[dict[str, object]] = []  # one executemany: one statement compiled once
    for group in by_delivery.values():
        links = links_of(session, group[0].campaign_id)
        real = [c for c in group if c.link is not None and c.link < len(links)]
        real = [c for c in real if not links[c.link].trap]
        count = sum(1 for link in links if not link.trap)
        burst = in_bursts([(c.at, c.link) for c in real], count, thresholds)
        humans = [real[n].id for n in burst if real[n].verdict == HUMAN]
        if humans:
            reason = burst_reason(len(burst), len({real[n].link for n in burst}), thresholds)
            flagged.extend({"event_id": i, "burst_reason": reason} for i in humans)
    if flagged:
        session.connection().execute(_FLAG_BURST, flagged)


def campaign_link(session: Session, delivery_id: int, url: str | None) -> tuple[int, int | None]:
    """(campaign id, link index) for an SES event about ``delivery_id``: the index of
    ``url`` in the campaign's link table (None for an open, or a URL not in the issue); a
    delivery without a campaign (a system mail) gives (0, None)."""
    campaign_id = session.scalar(select(Delivery.campaign_id).where(Delivery.id == delivery_id))
    if campaign_id is None:
        return 0, None
    if url is None:
        return campaign_id, None
    issue = session.scalar(select(Campaign.issue).where(Campaign.id == campaign_id))
    table = link_table(issue) if isinstance(issue, dict) else ()
    return campaign_id, next((x.index for x in table if not x.trap and x.url == url), None)


def forget_subscriber(session: Session, subscriber_id: int) -> int:
    """Delete every event recorded of a reader (opt-out); how many."""
    result = session.execute(
        delete(TrackingEvent).where(TrackingEvent.subscriber_id == subscriber_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)
