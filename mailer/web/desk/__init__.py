"""``/desk``: the editor's web desk, a thin entrance over the same use cases as the CLI
and the API (:mod:`mailer.sending.publish`).

Sign in with a token (``mailer tokens create --role editor``) -> paste or upload an issue
-> check it and see it (desktop, 375 px phone, plain text) -> send a test -> send now or
schedule, through a confirmation that names the list and the number of readers -> follow
the campaign (it reloads itself while sending; no script anywhere) -> pause, resume,
cancel. Campaigns made here are sent by ``mailer worker``, like the API's.

Modules: ``session`` (the signed cookie), ``context`` (the signed-in editor, form tokens,
page responses), ``auth``, ``issues`` (paste, check, preview), ``sending`` (test, confirm,
send), ``campaigns``, ``handed`` (where a pasted issue is kept between steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from mailer.web.desk.auth import AuthRoutes
from mailer.web.desk.campaigns import ACTIONS, CampaignRoutes
from mailer.web.desk.context import Desk
from mailer.web.desk.issues import IssueRoutes
from mailer.web.desk.sending import SendRoutes
from mailer.web.state import WebState

__all__ = ["desk_router"]


def desk_router(state: WebState) -> APIRouter:
    """Every /desk route, sharing one :class:`Desk` built from the app's state."""
    desk = Desk(state)
    auth, issues, campaigns = AuthRoutes(desk), IssueRoutes(desk), CampaignRoutes(desk)
    sending = SendRoutes(desk, issues.issue_context)
    router = APIRouter(prefix="/desk", include_in_schema=False)

    def add(path: str, endpoint: Callable[..., Any], method: str) -> None:
        router.add_api_route(path, endpoint, methods=[method])

    add("", issues.new_issue, "GET")
    add("/sign-in", auth.sign_in_form, "GET")
    add("/sign-in", auth.sign_in, "POST")
    add("/sign-out", auth.sign_out, "POST")
    add("/issues", issues.submit, "POST")
    add("/issues/{key}", issues.check_page, "GET")
    add("/issues/{key}/preview.html", issues.preview_html, "GET")
    add("/issues/{key}/test", sending.test_send, "POST")
    add("/issues/{key}/confirm", sending.confirm, "POST")
    add("/issues/{key}/send", sending.send, "POST")
    add("/campaigns", campaigns.campaigns, "GET")
    add("/campaigns/{campaign_id}", campaigns.campaign, "GET")
    for action in ACTIONS:
        add(f"/campaigns/{{campaign_id}}/{action}", campaigns.action(action), "POST")
    return router
