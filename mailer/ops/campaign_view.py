"""One campaign as the API, the web desk and `mailer campaigns show --json` present it.

REUSE THIS (web desk, API, CLI): :func:`campaign_view` / :func:`campaign_views` return
:class:`CampaignView`; ``.to_json()`` is the body of ``GET /api/v1/campaigns/{id}``::

    {"id", "status", "list", "subject", "issue", "scheduled_at", "expires_at", "created_at",
     "started_at", "finished_at", "counts": {"queued", "sending", "sent", "failed",
     "skipped"}, "total", "rate", "pause_reason", "stats": {"delivered", "hard_bounced",
     "soft_bounced", "complained", "unsubscribed", "opened", "clicked"},
     "at_local", "waves": [{"release_at", "zones", "counts"}]}

``counts`` are the Delivery rows by state (``mailer.sending.ledger``), ``rate`` the sends
per second between the start and the last send (``mailer.sending.campaigns.report``),
``stats`` what SES and the readers said afterwards (``mailer.ops.campaign_figures``, the
numbers of ``mailer stats`` and /admin; ``opened``/``clicked`` are null while no tracking
event exists). ``waves`` (``--at-local``: ``at_local`` is the local time, e.g. "06:00") are
the campaign's release times with their zones and rows by state (``mailer.sending.waves``);
``[]`` and null for a send at once. Times are ISO-8601 UTC or null. Nothing here is a
second copy of a count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.errors import InputError
from mailer.ops.campaign_figures import campaign_stats
from mailer.ops.counts import Counts, iso
from mailer.sending import campaigns
from mailer.sending.models import Campaign, CampaignStatus, DeliveryStatus, get_campaign
from mailer.sending.waves import Wave, campaign_waves

__all__ = ["STATES", "CampaignView", "campaign_view", "campaign_views"]

#: the ``counts`` keys, in the order of a Delivery row's life
STATES = tuple(s.value for s in DeliveryStatus)
STAT_KEYS = (
    "delivered",
    "hard_bounced",
    "soft_bounced",
    "complained",
    "unsubscribed",
    "opened",
    "clicked",
)
MAX_LIMIT = 100


@dataclass(frozen=True)
class CampaignView:
    id: int
    status: str
    list_slug: str
    subject: str
    issue_key: str
    scheduled_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, int]
    rate: float
    pause_reason: str | None
    stats: Counts
    at_local: str | None = None
    waves: tuple[Wave, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "list": self.list_slug,
            "subject": self.subject,
            "issue": self.issue_key,
            "scheduled_at": iso(self.scheduled_at),
            "expires_at": iso(self.expires_at),
            "created_at": self.created_at.isoformat(),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "counts": dict(self.counts),
            "total": self.total,
            "rate": round(self.rate, 3),
            "pause_reason": self.pause_reason,
            "stats": {key: getattr(self.stats, key) for key in STAT_KEYS},
            "at_local": self.at_local,
            "waves": [wave.to_json() for wave in self.waves],
        }


def campaign_view(session: Session, campaign_id: int) -> CampaignView:
    """The campaign's view; NotFoundError when there is none."""
    get_campaign(session, campaign_id)
    return _views(session, [campaign_id])[0]


def campaign_views(
    session: Session, *, status: str | None = None, limit: int = 20
) -> list[CampaignView]:
    """The newest campaigns first, optionally of one status; ``limit`` 1..100."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit must be between 1 and {MAX_LIMIT}")
    query = select(Campaign.id).order_by(Campaign.id.desc()).limit(limit)
    if status:
        if status not in {s.value for s in CampaignStatus}:
            known = ", ".join(s.value for s in CampaignStatus)
            raise InputError(f"unknown status {status!r} (one of {known})")
        query = query.where(Campaign.status == status)
    return _views(session, list(session.scalars(query)))


def _views(session: Session, ids: list[int]) -> list[CampaignView]:
    if not ids:
        return []
    figures = {c.id: c.counts for c in campaign_stats(session, campaign_ids=ids)}
    out = []
    for cid in ids:
        rep = campaigns.report(session, cid, failures=0)
        c = rep.campaign
        out.append(
            CampaignView(
                id=c.id,
                status=c.status,
                list_slug=rep.list_slug,
                subject=c.subject,
                issue_key=c.issue_key,
                scheduled_at=c.scheduled_at,
                expires_at=c.expires_at,
                created_at=c.created_at,
                started_at=c.started_at,
                finished_at=c.finished_at,
                counts={state: rep.counts.get(state, 0) for state in STATES},
                rate=rep.rate,
                pause_reason=c.pause_reason,
                stats=figures.get(cid, Counts()),
                at_local=c.at_local,
                waves=tuple(campaign_waves(session, c)),
            )
        )
    return out
