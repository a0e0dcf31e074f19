"""ASGI middleware: security headers on every response, and a cap on request bodies.

Headers are added only where the route did not set its own (the archive serves a stored
email, which needs inline styles, with a CSP of its own). Pages run no script at all, so
the default policy allows none; ``Referrer-Policy: no-referrer`` keeps the signed tokens in
our URLs from leaking to any site a reader goes on to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_csp(base_url: str) -> str:
    """The policy of our own pages: our stylesheet, our forms, nothing else."""
    origin = origin_of(base_url)
    return (
        "default-src 'none'; "
        f"style-src 'self' {origin}; "
        "img-src 'self' data:; "
        f"form-action 'self' {origin}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


#: The web edition of an issue is a stored email: inline styles and remote images, no script.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """Adds CSP, nosniff, referrer policy, framing and (on https) HSTS headers."""

    def __init__(self, app: ASGIApp, *, base_url: str) -> None:
        self.app = app
        headers = [
            ("content-security-policy", page_csp(base_url)),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
            ("cross-origin-opener-policy", "same-origin"),
            ("permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
        ]
        if base_url.startswith("https://"):
            headers.append(("strict-transport-security", "max-age=31536000"))
        self.headers = [(k.encode(), v.encode()) for k, v in headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413: by Content-Length before reading, and
    by counting while reading (chunked uploads); ``small`` path prefixes get ``small_bytes``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        small_prefixes: Iterable[str] = (),
        small_bytes: int = 16 * 1024,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.small_prefixes = tuple(small_prefixes)
        self.small_bytes = min(small_bytes, max_bytes)

    def limit_for(self, path: str) -> int:
        return self.small_bytes if path.startswith(self.small_prefixes) else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > limit:
                    api = scope.get("path", "").startswith("/api/")  # the API answers JSON
                    await _plain_413(send, limit, html=_accepts_html(scope) and not api, api=api)
                    return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


def _accepts_html(scope: Scope) -> bool:
    """A browser's request (the desk's paste form, a reader form): answer with a page."""
    for name, value in scope.get("headers", []):
        if name == b"accept":
            return b"text/html" in value
    return False


#: what a browser shows for a body refused before it was read (no stylesheet: nothing more
#: is fetched from a server that just refused a request)
_HTML_413 = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>That was too much</title></head><body><main><h1>That was too much</h1>"
    "<p>What you sent is over {kb} KB, the most this server takes at once. Nothing was "
    "received or saved: go back and send something smaller.</p>"
    "<p>Error 413: request body too large (limit {limit} bytes).</p></main></body></html>\n"
)


async def _plain_413(send: Send, limit: int, *, html: bool = False, api: bool = False) -> None:
    if api:
        body = json.dumps({"error": f"the request body is larger than {limit} bytes"}).encode()
        ctype = b"application/json"
    elif html:
        body = _HTML_413.format(kb=limit // 1024, limit=limit).encode()
        ctype = b"text/html; charset=utf-8"
    else:
        body = f"Request body too large (limit {limit} bytes).\n".encode()
        ctype = b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", ctype),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
