"""SES's own open and click events into the same ``tracking_events`` rows (issue 16).

When a configuration set publishes them (``mailer ses setup --tracking``), SES reports the
opens it saw through its pixel and the clicks through its redirect. Each matched to one of
our deliveries becomes a hit with ``source='ses'`` and is classed like ours (SES tells the
user agent and address, not the Accept-Language, so that rule does not apply). A click on
a URL that is not one of the issue's item links (the footer's, or our own ``/r/`` link
that SES wrapped: that one is recorded by our redirect) is not recorded again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.feedback.events import ClickInfo, OpenInfo, SESEvent
from mailer.feedback.tracking.classify import Hit, Thresholds
from mailer.feedback.tracking.store import LinkTables, campaign_link, write_hits

__all__ = ["record_ses_event"]


def record_ses_event(
    session: Session, settings: Settings, event: SESEvent, delivery_id: int
) -> list[str]:
    """Record an Open or Click event about ``delivery_id``; the rule's actions."""
    detail = event.detail
    if isinstance(detail, ClickInfo):
        url: str | None = detail.link
    elif isinstance(detail, OpenInfo):
        url = None
    else:
        return []
    campaign_id, link = campaign_link(session, delivery_id, url)
    if not campaign_id:
        return ["not tracked: no campaign"]
    if url is not None and link is None:
        return ["not tracked: link not in the issue"]
    hit = Hit(
        campaign_id=campaign_id,
        delivery_id=delivery_id,
        link=link,
        at=event.occurred_at,
        source="ses",
        user_agent=detail.user_agent or "",
        accept_language=None,
        client_ip=detail.ip_address or "",
    )
    (verdict,) = write_hits(session, [hit], Thresholds.from_settings(settings), LinkTables())
    return [f"tracked: {verdict}"] if verdict else ["not tracked: reader opted out"]
