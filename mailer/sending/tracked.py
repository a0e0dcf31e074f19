"""A campaign's HTML as its readers get it: with tracked links when its list tracks.

The engine calls :func:`campaign_html` once per run of a campaign (compile once,
personalize cheaply: docs/architecture.md principle 1) and fills ``%%track%%`` per reader
(:func:`mailer.render.tracking.reader_track`). Test sends, the web edition and system
mails never come here, so they are never tracked.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailer.render.tokens import Signer
from mailer.render.tracking import link_table, rewrite
from mailer.sending.models import Campaign
from subscribers.tracking import tracking_of

__all__ = ["campaign_html"]


def campaign_html(
    session: Session, campaign: Campaign, signer: Signer, base_url: str
) -> tuple[str, bool]:
    """(HTML, tracked): the stored HTML rewritten when the list tracks clicks or opens."""
    track = tracking_of(session, campaign.list_id)
    if not track.any:
        return campaign.html, False
    html = rewrite(
        campaign.html,
        link_table(campaign.issue),
        base_url=base_url,
        campaign_id=campaign.id,
        signer=signer,
        clicks=track.clicks,
        opens=track.opens,
    )
    return html, True
