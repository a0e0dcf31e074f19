"""``/admin/campaigns/{id}/links``: one campaign's clicks per link and its opens, people and
machines apart (issue 16), behind ``MAILER_ADMIN_TOKEN`` like the rest of /admin.

    GET /admin/campaigns/{id}/links       the page (HTML)
    GET /admin/campaigns/{id}/links.json  the same figures as ``mailer stats --campaign N
                                          --links --json``
    unknown campaign                      404

Thin over :func:`mailer.ops.engagement.campaign_engagement`; the page reuses the admin
frame and its CSP (no script; titles and URLs from the issue are autoescaped text).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailer.ops.engagement import campaign_engagement
from mailer.sending.models import Campaign
from mailer.web.admin import admin_page, require_admin
from mailer.web.state import WebState

__all__ = ["admin_links_router"]


def links_page(
    request: Request, campaign_id: int, state: WebState = Depends(require_admin)
) -> Response:
    with state.sessions() as session:
        report = campaign_engagement(session, campaign_id)
        subject = session.scalar(select(Campaign.subject).where(Campaign.id == campaign_id))
    return admin_page(
        state,
        "admin_links.html",
        {
            "title": f"Campaign {campaign_id}: links",
            "active": "dashboard",
            "report": report,
            "subject": subject or "",
            "min_delay": f"{state.settings.track_min_delay:g}",
        },
    )


def links_json(campaign_id: int, state: WebState = Depends(require_admin)) -> Response:
    with state.sessions() as session:
        report = campaign_engagement(session, campaign_id)
    return JSONResponse(report.to_json(), headers={"Cache-Control": "no-store"})


def admin_links_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/admin/campaigns/{campaign_id}/links.json",
        links_json,
        methods=["GET"],
        include_in_schema=False,
    )
    router.add_api_route(
        "/admin/campaigns/{campaign_id}/links",
        links_page,
        methods=["GET"],
        include_in_schema=False,
    )
    return router
