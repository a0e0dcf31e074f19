"""What readers read: a campaign's clicks per link and its opens, people and machines apart.

docs/architecture.md principle 12 (honest numbers): ``human_clicks`` and ``unique_human_clickers``
count only clicks classed human; machines (scanners, HEAD requests, clicks too soon, bursts,
the trap) and proxies (Apple's and Google's image fetches) are counted beside them, never
in them. Every entrance reads the same figures from here: ``mailer stats --campaign N
--links`` (and ``--json``), ``/admin``, ``/metrics``, and the API's campaign stats through
:func:`campaign_opened_clicked`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from mailer.feedback.tracking.models import CLICK, HUMAN, MACHINE, OPEN, PROXY, TrackingEvent
from mailer.render.tracking import link_table
from mailer.sending.models import Campaign, Delivery, DeliveryStatus, get_campaign

__all__ = [
    "CampaignEngagement",
    "LinkStats",
    "campaign_engagement",
    "campaign_opened_clicked",
    "event_totals",
    "list_engagement",
]


@dataclass(frozen=True, slots=True)
class LinkStats:
    url: str
    title: str
    human_clicks: int = 0
    unique_human_clickers: int = 0
    machine_clicks: int = 0
    proxy_clicks: int = 0


@dataclass(frozen=True)
class CampaignEngagement:
    """One campaign's figures; ``sent`` is its delivered messages (the rates' base)."""

    campaign_id: int
    sent: int
    links: list[LinkStats]
    opens: Mapping[str, int]
    unique_human_openers: int = 0
    unique_human_clickers: int = 0
    trap_clicks: int = 0
    machine_clicks: int = 0
    clicks: int = 0

    @property
    def click_through_rate(self) -> float:
        """Unique human clickers per message sent (0 when nothing was sent)."""
        return self.unique_human_clickers / self.sent if self.sent else 0.0

    @property
    def machine_share(self) -> float:
        """Share of all clicks that were not a person's."""
        if not self.clicks:
            return 0.0
        return (self.clicks - sum(s.human_clicks for s in self.links)) / self.clicks

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` shape: ``{"links": [...], "opens": {"human", "machine", "proxy"}}``."""
        return {
            "links": [
                {
                    "url": s.url,
                    "title": s.title,
                    "human_clicks": s.human_clicks,
                    "unique_human_clickers": s.unique_human_clickers,
                    "machine_clicks": s.machine_clicks,
                    "proxy_clicks": s.proxy_clicks,
                }
                for s in self.links
            ],
            "opens": {k: int(self.opens.get(k, 0)) for k in (HUMAN, MACHINE, PROXY)},
        }


def campaign_engagement(session: Session, campaign_id: int) -> CampaignEngagement:
    """The campaign's figures (NotFoundError for an unknown campaign)."""
    campaign = get_campaign(session, campaign_id)
    table = link_table(campaign.issue)
    ev = TrackingEvent
    per_link: dict[tuple[int | None, str], tuple[int, int]] = {}
    for link, verdict, count, readers in session.execute(
        select(ev.link, ev.verdict, func.count(), func.count(distinct(ev.delivery_id)))
        .where(ev.campaign_id == campaign_id, ev.kind == CLICK)
        .group_by(ev.link, ev.verdict)
    ):
        per_link[(link, verdict)] = (int(count), int(readers))
    links = [
        LinkStats(
            url=entry.url,
            title=entry.title,
            human_clicks=per_link.get((entry.index, HUMAN), (0, 0))[0],
            unique_human_clickers=per_link.get((entry.index, HUMAN), (0, 0))[1],
            machine_clicks=per_link.get((entry.index, MACHINE), (0, 0))[0],
            proxy_clicks=per_link.get((entry.index, PROXY), (0, 0))[0],
        )
        for entry in table
        if not entry.trap
    ]
    trap = next((entry.index for entry in table if entry.trap), None)
    opens: dict[str, int] = {
        str(verdict): int(count)
        for verdict, count in session.execute(
            select(ev.verdict, func.count())
            .where(ev.campaign_id == campaign_id, ev.kind == OPEN)
            .group_by(ev.verdict)
        )
    }
    return CampaignEngagement(
        campaign_id=campaign_id,
        sent=_sent(session, campaign_id),
        links=links,
        opens={k: int(opens.get(k, 0)) for k in (HUMAN, MACHINE, PROXY)},
        unique_human_openers=_unique(session, campaign_id, OPEN),
        unique_human_clickers=_unique(session, campaign_id, CLICK),
        trap_clicks=sum(c for (link, _), (c, _) in per_link.items() if link == trap),
        machine_clicks=sum(c for (_, v), (c, _) in per_link.items() if v != HUMAN),
        clicks=sum(c for c, _ in per_link.values()),
    )


def _sent(session: Session, campaign_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENT
            )
        )
        or 0
    )


def _unique(session: Session, campaign_id: int, kind: str) -> int:
    ev = TrackingEvent
    return int(
        session.scalar(
            select(func.count(distinct(ev.delivery_id))).where(
                ev.campaign_id == campaign_id, ev.kind == kind, ev.verdict == HUMAN
            )
        )
        or 0
    )


def campaign_opened_clicked(session: Session, campaign_id: int) -> dict[str, int]:
    """``{"opened": readers, "clicked": readers}``: how many readers a person's open or
    click was seen from (machines and proxies left out). For the API's campaign stats."""
    return {
        "opened": _unique(session, campaign_id, OPEN),
        "clicked": _unique(session, campaign_id, CLICK),
    }


def event_totals(session: Session) -> dict[tuple[str, str], int]:
    """Every tracking event so far by (kind, verdict): ``/metrics``' counter."""
    ev = TrackingEvent
    return {
        (str(kind), str(verdict)): int(n)
        for kind, verdict, n in session.execute(
            select(ev.kind, ev.verdict, func.count()).group_by(ev.kind, ev.verdict)
        )
    }


@dataclass(frozen=True, slots=True)
class CampaignLine:
    """One campaign in a list's engagement over time."""

    campaign_id: int
    subject: str
    started_at: datetime | None
    sent: int
    unique_human_openers: int
    unique_human_clickers: int
    clicks: int
    machine_clicks: int

    @property
    def click_through_rate(self) -> float:
        return self.unique_human_clickers / self.sent if self.sent else 0.0

    @property
    def open_rate(self) -> float:
        """Readers with a person's open per message sent (proxies left out: a floor)."""
        return self.unique_human_openers / self.sent if self.sent else 0.0

    @property
    def machine_share(self) -> float:
        return self.machine_clicks / self.clicks if self.clicks else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "subject": self.subject,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "sent": self.sent,
            "unique_human_openers": self.unique_human_openers,
            "unique_human_clickers": self.unique_human_clickers,
            "click_through_rate": round(self.click_through_rate, 6),
            "machine_share": round(self.machine_share, 6),
        }


def list_engagement(
    session: Session, list_id: int, *, since: datetime | None = None
) -> list[CampaignLine]:
    """The list's campaigns (started since ``since``, oldest first) with their readers'
    opens and clicks: the list's engagement over time."""
    query = select(Campaign.id, Campaign.subject, Campaign.started_at).where(
        Campaign.list_id == list_id, Campaign.started_at.is_not(None)
    )
    if since is not None:
        query = query.where(Campaign.started_at >= since)
    ev = TrackingEvent
    lines = []
    for cid, subject, started in session.execute(query.order_by(Campaign.started_at, Campaign.id)):
        clicks = {
            str(verdict): int(n)
            for verdict, n in session.execute(
                select(ev.verdict, func.count())
                .where(ev.campaign_id == cid, ev.kind == CLICK)
                .group_by(ev.verdict)
            )
        }
        lines.append(
            CampaignLine(
                campaign_id=cid,
                subject=subject,
                started_at=started,
                sent=_sent(session, cid),
                unique_human_openers=_unique(session, cid, OPEN),
                unique_human_clickers=_unique(session, cid, CLICK),
                clicks=sum(clicks.values()),
                machine_clicks=sum(n for v, n in clicks.items() if v != HUMAN),
            )
        )
    return lines
