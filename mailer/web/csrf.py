"""CSRF protection for the reader forms, without a server-side session.

A form token is ``<issued>.<nonce>.<mac>``: ``issued`` Unix seconds (hex), ``nonce`` 12
random bytes, ``mac`` HMAC-SHA256 (key derived from ``MAILER_SECRET_KEY``) over the form's
path, the issue time, the nonce and a *binding*:

* the subscribe form binds to a random per-browser value kept in a cookie (signed
  double-submit): a page on another site can neither read that cookie nor guess the mac,
  so it cannot make a visitor's browser subscribe an address;
* forms under a signed link (unsubscribe, preferences) bind to nothing but their path,
  which already holds the reader's secret token; they work with cookies off.

Tokens older than ``max_age`` are refused (the page just needs a reload). The RFC 8058
one-click POST is deliberately *not* checked: mailbox providers send no cookies or tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

FIELD = "csrf_token"
_TOKEN = re.compile(r"^([0-9a-f]{1,12})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$")
_BROWSER_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class CsrfError(HTTPException):
    """A form post without a valid CSRF token: 403."""

    def __init__(self, reason: str) -> None:
        super().__init__(403, reason)


class CsrfGuard:
    """Issues and checks form tokens; ``secure`` names and flags the cookie for https."""

    def __init__(self, secret: str, *, secure: bool, max_age: float = 86400.0) -> None:
        self._key = hmac.new(secret.encode(), b"brief-mailer csrf v1", hashlib.sha256).digest()
        self.secure = secure
        self.max_age = max_age
        # __Host- cookies must be Secure, Path=/ and without Domain: no subdomain can set one.
        self.cookie_name = "__Host-mailer_csrf" if secure else "mailer_csrf"

    # -- the per-browser binding (subscribe form) ----------------------------------------

    def browser_id(self, request: Request) -> str | None:
        value = request.cookies.get(self.cookie_name)
        return value if value and _BROWSER_ID.match(value) else None

    def ensure_browser_id(self, request: Request) -> tuple[str, bool]:
        """(the browser's id, True if it is new and must be set with :meth:`set_cookie`)."""
        current = self.browser_id(request)
        if current is not None:
            return current, False
        return secrets.token_urlsafe(24), True

    def set_cookie(self, response: Response, browser_id: str) -> None:
        response.set_cookie(
            self.cookie_name,
            browser_id,
            max_age=int(self.max_age * 7),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    # -- tokens -------------------------------------------------------------------------

    def _mac(self, path: str, issued: str, nonce: str, binding: str) -> str:
        msg = "\x00".join((path, issued, nonce, binding)).encode()
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    def issue(self, path: str, now: float, binding: str = "") -> str:
        """A token for the form that posts to ``path``."""
        issued = f"{int(now):x}"
        nonce = _b64(secrets.token_bytes(12))
        return f"{issued}.{nonce}.{self._mac(path, issued, nonce, binding)}"

    def check(self, token: object, path: str, now: float, binding: str | None = "") -> None:
        """Raise CsrfError unless ``token`` was issued for ``path`` and ``binding``, recently."""
        if not isinstance(token, str) or not token:
            raise CsrfError("the form's security token is missing")
        if binding is None:
            raise CsrfError("this form needs cookies: allow them for this site and try again")
        m = _TOKEN.match(token)
        if m is None:
            raise CsrfError("the form's security token is not valid")
        issued, nonce, mac = m.groups()
        if not hmac.compare_digest(mac, self._mac(path, issued, nonce, binding)):
            raise CsrfError("the form's security token is not valid")
        age = now - int(issued, 16)
        if age > self.max_age or age < -300:
            raise CsrfError("the form has expired: reload the page and try again")
