"""The campaigns page and one campaign's page, with pause, resume, cancel, retry-failed.

    GET  /desk/campaigns                      the newest campaigns
    GET  /desk/campaigns/{id}                 progress, counts, stats
    GET  /desk/campaigns/{id}?follow=1        the same, reloading itself every few seconds
                                              (``<meta http-equiv=refresh>``, no script)
                                              while it is scheduled or sending
    POST /desk/campaigns/{id}/pause|resume|cancel|retry-failed
                                              CSRF-checked; 303 back to the campaign

Following is the editor's choice (a link on the page, and "Stop following" on the page
that reloads): a page that reloads by itself unasked moves a screen reader's place and
focus every few seconds (WCAG 2.2.1). The figures are the API's
(:mod:`mailer.ops.campaign_view`), the changes its use cases (:mod:`mailer.sending.publish`).
Resuming a campaign the reputation guard paused needs an ops token: an editor sees why it
paused and who to ask.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Path
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailer.errors import ConflictError, ForbiddenError, NotFoundError
from mailer.ops.campaign_view import campaign_view, campaign_views
from mailer.sending import publish
from mailer.sending.guard import is_guard_pause
from mailer.sending.models import CampaignStatus
from mailer.web.desk import handed
from mailer.web.desk.context import NO_STORE, Desk, Signed
from mailer.web.forms import read_form

#: seconds between reloads of a campaign's page while it is scheduled or sending
REFRESH_SECONDS = 5
#: a due campaign no worker has started after this long: say that a worker may be missing
WORKER_GRACE = timedelta(minutes=2)
LIST_LIMIT = 50
ACTIONS = ("pause", "resume", "cancel", "retry-failed")
CampaignId = Annotated[int, Path(ge=1, le=2_147_483_647)]
_LIVE = (CampaignStatus.SCHEDULED.value, CampaignStatus.SENDING.value)


def refresh_after(status: str, *, follow: bool) -> int | None:
    """Seconds until a followed page reloads itself, or None (not followed, or the campaign
    has settled). A scheduled campaign reloads as often as a sending one: the worker's
    clock, not the page's, decides when it starts."""
    return REFRESH_SECONDS if follow and status in _LIVE else None


class CampaignRoutes:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def campaigns(self, request: Request) -> Response:
        signed = self.desk.who(request)
        if signed is None:
            return self.desk.to_sign_in(request)
        with self.desk.state.sessions() as s:
            views = campaign_views(s, limit=LIST_LIMIT)
        return self.desk.page(
            "campaigns.html",
            {"title": "Campaigns", "active": "campaigns", "views": views},
            signed=signed,
        )

    async def campaign(self, request: Request, campaign_id: CampaignId) -> Response:
        signed = self.desk.who(request)
        if signed is None:
            return self.desk.to_sign_in(request)
        return self._page(request, signed, campaign_id)

    def _page(
        self,
        request: Request,
        signed: Signed,
        campaign_id: int,
        *,
        refused: str = "",
        status: int = 200,
    ) -> Response:
        """The campaign's page; ``refused``: why the action just posted was not done."""
        changed = request.query_params.get("changed", "")
        with self.desk.state.sessions() as s:
            view = campaign_view(s, campaign_id)
        follow = request.query_params.get("follow") == "1"
        due = view.scheduled_at or view.created_at
        stalled = (
            view.status == CampaignStatus.SCHEDULED and self.desk.state.now() - due > WORKER_GRACE
        )
        guard_paused = view.status == CampaignStatus.PAUSED and is_guard_pause(view.pause_reason)
        tokens = {
            action: self.desk.form_token(signed, f"/desk/campaigns/{campaign_id}/{action}")
            for action in ACTIONS
        }
        done = view.total - view.counts.get("queued", 0) - view.counts.get("sending", 0)
        return self.desk.page(
            "campaign.html",
            {
                "title": f"Campaign {view.id}",
                "active": "campaigns",
                "view": view,
                "done_rows": done,
                "percent": round(100 * done / view.total) if view.total else 0,
                "live": view.status in _LIVE,
                "follow": follow,
                "every": REFRESH_SECONDS,
                "refresh": refresh_after(view.status, follow=follow),
                "tokens": tokens,
                "guard_paused": guard_paused,
                "stalled_since": due if stalled else None,
                "issue_kept": handed.is_kept(self.desk.state.sessions, view.issue_key),
                "again": request.query_params.get("again") == "1",
                "changed": changed if changed in ACTIONS else "",
                "refused": refused,
            },
            signed=signed,
            status=status,
        )

    def action(self, name: str) -> Callable[..., Any]:
        """The POST handler of one action."""

        async def handler(request: Request, campaign_id: CampaignId) -> Response:
            signed = self.desk.who(request)
            if signed is None:
                return self.desk.to_sign_in(request)
            form = await read_form(request)
            path = f"/desk/campaigns/{campaign_id}/{name}"
            self.desk.check_form(signed, form.get("csrf_token"), path)
            force = form.get("force") == "1"
            try:
                self._change(signed, name, campaign_id, force=force)
            except ForbiddenError as err:  # forcing a guard pause, by an editor
                return self._page(request, signed, campaign_id, refused=str(err), status=403)
            except ConflictError as err:  # e.g. pausing a campaign that is done meanwhile
                return self._page(request, signed, campaign_id, refused=str(err), status=409)
            return RedirectResponse(
                f"/desk/campaigns/{campaign_id}?changed={name}", status_code=303, headers=NO_STORE
            )

        return handler

    def _change(self, signed: Signed, name: str, campaign_id: int, *, force: bool) -> None:
        sessions = self.desk.state.sessions
        if name == "pause":
            publish.pause(sessions, campaign_id, f"paused on the desk by {signed.principal.name}")
        elif name == "resume":
            publish.resume(sessions, campaign_id, force=force, ops=signed.is_ops)
        elif name == "cancel":
            publish.cancel(sessions, campaign_id)
        elif name == "retry-failed":
            publish.retry_failed(sessions, campaign_id)
        else:  # pragma: no cover - the router registers ACTIONS only
            raise NotFoundError("no such action")
