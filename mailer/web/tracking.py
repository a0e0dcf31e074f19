"""``GET /r/{token}`` (a tracked link) and ``GET /o/{token}`` (the open pixel).

    genuine click token, link in the campaign's table  -> 302 to that link's exact URL
    the hidden trap link                               -> 200, a page with nothing on it
    genuine open token                                 -> 200, a 1x1 transparent GIF
    forged, truncated, altered, another reader's link,
    a campaign or link that does not exist             -> 404, never a redirect

The answer goes out before anything is written: the hit is queued on the
:class:`~mailer.feedback.tracking.intake.TrackingIntake` and written behind in batches,
classed human, machine or proxy there. The redirect target comes from the campaign's link
table (its stored issue, read once per campaign and kept), never from the token, so no
token can send anyone to a URL that is not in the issue. ``HEAD`` is answered like ``GET``
(scanners use it; it is recorded, as a machine).
"""

from __future__ import annotations

import base64
import logging

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from mailer.errors import NotFoundError, TokenError
from mailer.feedback.tracking.classify import Hit
from mailer.feedback.tracking.intake import TrackingIntake
from mailer.feedback.tracking.store import LinkTables
from mailer.render.tracking import Link, TrackedToken, verify_click, verify_open
from mailer.web.state import WebState, client_ip, web_state

__all__ = ["flush_tracking", "tracking_router"]

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
_TRAP_PAGE = b"<!doctype html><title>Nothing here</title><p>Nothing here.</p>"


def tracking_router(app: FastAPI, state: WebState) -> APIRouter:
    """The two routes, with an intake of their own kept on ``app.state.tracking`` (so the
    app's shutdown can flush it: :func:`flush_tracking`)."""
    links = LinkTables()
    intake = TrackingIntake(state.settings, state.sessions, links=links)
    app.state.tracking = intake
    router = APIRouter()

    async def table(campaign_id: int) -> tuple[Link, ...]:
        cached = links.cached(campaign_id)
        if cached is not None:
            return cached

        def read() -> tuple[Link, ...]:
            with state.sessions() as session:
                return links(session, campaign_id)

        return await run_in_threadpool(read)

    def hit(request: Request, token: TrackedToken, source: str) -> Hit:
        headers = request.headers
        return Hit(
            campaign_id=token.campaign_id,
            delivery_id=token.delivery_id,
            link=token.link,
            at=web_state(request).now(),
            source=source,
            method=request.method,
            user_agent=headers.get("user-agent", "")[:1000],
            accept_language=headers.get("accept-language", ""),
            client_ip=client_ip(request),
        )

    async def click(request: Request) -> Response:
        try:
            token = verify_click(state.signer, request.path_params["token"])
        except TokenError as err:
            raise NotFoundError("no such link") from err
        table_ = await table(token.campaign_id)
        if token.link is None or token.link >= len(table_):
            raise NotFoundError("no such link")
        link = table_[token.link]
        intake.record(hit(request, token, "redirect"))
        if link.trap:
            return Response(_TRAP_PAGE, media_type="text/html", headers=_NO_STORE)
        return Response(status_code=302, headers={"Location": link.url, **_NO_STORE})

    async def pixel(request: Request) -> Response:
        try:
            token = verify_open(state.signer, request.path_params["token"])
        except TokenError as err:
            raise NotFoundError("no such image") from err
        if not await table(token.campaign_id):  # the campaign is gone
            raise NotFoundError("no such image")
        intake.record(hit(request, token, "pixel"))
        return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)

    # Plain Starlette routes: no dependency solving or response model per request.
    router.add_route("/r/{token}", click, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_route("/o/{token}", pixel, methods=["GET", "HEAD"], include_in_schema=False)
    return router


def flush_tracking(app: FastAPI, timeout: float = 30.0) -> bool:
    """Write every queued hit (the app's shutdown: SIGTERM loses none); False, and a log
    line saying how many, when the database did not take them within ``timeout``."""
    intake = getattr(app.state, "tracking", None)
    if not isinstance(intake, TrackingIntake) or intake.flush(timeout):
        return True
    log.error("%d tracking hits not written within %.0f s: lost", intake.writer.pending, timeout)
    return False
