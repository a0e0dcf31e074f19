"""``GET /r/{token}`` (a tracked link) and ``GET /o/{token}`` (the open pixel).

    genuine click token, link in the campaign's table  -> 302 to that link's exact URL
    the hidden trap link                               -> 200, a page with nothing on it
    genuine open token                                 -> 200, a 1x1 transparent GIF
    forged, truncated, altered, another reader's link,
    a campaign or link that does not exist             -> 404, never a redirect
    any method but GET and HEAD                        -> 405

The answer goes out before anything is written: the hit is queued on the
:class:`~mailer.feedback.tracking.intake.TrackingIntake` and written behind in batches,
classed human, machine or proxy there. The redirect target comes from the campaign's link
table (its stored issue, read once per campaign and kept), never from the token, so no
token can send anyone to a URL that is not in the issue. ``HEAD`` is answered like ``GET``
(scanners use it; it is recorded, as a machine).

The busiest route of the app is answered by a plain ASGI middleware in front of FastAPI
(:func:`install_tracking`): no route matching, dependency solving or page middleware per
click (in-process a click cost ~170 us through the FastAPI stack on this project's loaded
2-core machine against ~10 us for a bare Starlette 302). Its answers carry their own
headers: no caching, no referrer, nosniff, and a CSP that allows nothing on the trap page.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from mailer.errors import TokenError
from mailer.feedback.tracking.classify import Hit
from mailer.feedback.tracking.intake import TrackingIntake
from mailer.feedback.tracking.store import LinkTables
from mailer.render.tracking import URL_SAFE, Link, TrackedToken, verify_click, verify_open
from mailer.web.state import WebState

__all__ = ["PIXEL", "TrackingFirst", "flush_tracking", "install_tracking"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_COMMON = [
    (b"cache-control", b"no-store, private"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-robots-tag", b"noindex, nofollow"),
]
_PAGE_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
_TRAP_PAGE = b"<!doctype html><title>Nothing here</title><p>Nothing here.</p>"
_NOT_FOUND = b"<!doctype html><title>Link not found</title><p>This link is not valid.</p>"


class TrackingEndpoint:
    """Answers ``/r/`` and ``/o/`` (see the module docstring) and queues the hit."""

    def __init__(self, state: WebState, intake: TrackingIntake, links: LinkTables) -> None:
        self.state = state
        self.intake = intake
        self.links = links

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, [(b"allow", b"GET, HEAD"), *_PAGE_HEADERS], b"")
            return
        if method == "HEAD":
            send = _without_body(send)
        path: str = scope["path"]
        click = path.startswith("/r/")
        try:
            token = (verify_click if click else verify_open)(self.state.signer, path[3:])
        except TokenError:
            await _answer(send, 404, _PAGE_HEADERS, _NOT_FOUND)
            return
        table = await self._table(token.campaign_id)
        if not table or (token.link is not None and token.link >= len(table)):
            await _answer(send, 404, _PAGE_HEADERS, _NOT_FOUND)
            return
        self.intake.record(self._hit(scope, token, "redirect" if click else "pixel"))
        if not click:
            await _answer(send, 200, [(b"content-type", b"image/gif")], PIXEL)
            return
        assert token.link is not None
        link = table[token.link]
        if link.trap:
            await _answer(send, 200, _PAGE_HEADERS, _TRAP_PAGE)
            return
        await _answer(send, 302, [(b"location", _location(link.url))], b"")

    async def _table(self, campaign_id: int) -> tuple[Link, ...]:
        cached = self.links.cached(campaign_id)
        if cached is not None:
            return cached

        def read() -> tuple[Link, ...]:
            with self.state.sessions() as session:
                return self.links(session, campaign_id)

        return await run_in_threadpool(read)

    def _hit(self, scope: Scope, token: TrackedToken, source: str) -> Hit:
        agent = language = ""
        for name, value in scope.get("headers", ()):
            if name == b"user-agent":
                agent = value[:1000].decode("latin-1")
            elif name == b"accept-language":
                language = value[:200].decode("latin-1")
        client = scope.get("client")
        return Hit(
            campaign_id=token.campaign_id,
            delivery_id=token.delivery_id,
            link=token.link,
            at=self.state.now(),
            source=source,
            method=scope.get("method", "GET"),
            user_agent=agent,
            accept_language=language,
            client_ip=client[0] if client else "",
        )


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_COMMON, *headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _without_body(send: Send) -> Send:
    """HEAD: the status and headers of the GET (its Content-Length too), no body."""

    async def head(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head


def _location(url: str) -> bytes:
    """The URL as a header value: ASCII as it stands, anything else (an IRI's letters, a
    stray space or line break) percent-encoded, so the value is one clean header line."""
    return quote(url, safe=URL_SAFE).encode("ascii")


class TrackingFirst:
    """ASGI middleware: ``/r/...`` and ``/o/...`` go to the endpoint, the rest to the app."""

    def __init__(self, app: ASGIApp, endpoint: TrackingEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(("/r/", "/o/")):
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install_tracking(app: FastAPI, state: WebState) -> None:
    """Put the tracking endpoint in front of the app, with an intake of its own kept on
    ``app.state.tracking`` (the app's shutdown flushes it: :func:`flush_tracking`)."""
    links = LinkTables()
    intake = TrackingIntake(state.settings, state.sessions, links=links)
    app.state.tracking = intake
    app.add_middleware(TrackingFirst, endpoint=TrackingEndpoint(state, intake, links))


def flush_tracking(app: FastAPI, timeout: float = 30.0) -> bool:
    """Write every queued hit (the app's shutdown: SIGTERM loses none); False, and a log
    line saying how many, when the database did not take them within ``timeout``."""
    intake = getattr(app.state, "tracking", None)
    if not isinstance(intake, TrackingIntake) or intake.flush(timeout):
        return True
    log.error("%d tracking hits not written within %.0f s: lost", intake.writer.pending, timeout)
    return False
