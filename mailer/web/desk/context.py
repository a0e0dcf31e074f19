"""What every desk page shares: the signed-in editor, form tokens bound to the session,
and the page response (its own CSP: the previews are framed from our own origin).

Built once per app by :func:`mailer.web.desk.desk_router`, beside the app's
:class:`~mailer.web.state.WebState`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mailer.access.tokens import Principal, Role
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.desk.session import DeskSession, SessionCodec
from mailer.web.security import origin_of
from mailer.web.state import WebState

__all__ = ["NO_STORE", "Desk", "Signed"]

SIGN_IN = "/desk/sign-in"
#: where a signed-in editor may be sent back to after signing in: desk pages only
_NEXT = re.compile(r"^/desk(?:/[A-Za-z0-9/_-]*)?$")
#: a form's action -> the page it was on (the issue's or the campaign's)
_STEP = re.compile(r"/(?:issues|test|confirm|send|pause|resume|cancel|retry-failed)$")
NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


@dataclass(frozen=True)
class Signed:
    """A request with a valid desk session."""

    session: DeskSession
    principal: Principal

    @property
    def is_ops(self) -> bool:
        return self.principal.may(Role.OPS)


class Desk:
    """The desk's shared parts for one app."""

    def __init__(self, state: WebState) -> None:
        settings = state.settings
        self.state = state
        self.codec = SessionCodec(
            settings.require_secret_key(), secure=settings.base_url.startswith("https://")
        )
        origin = origin_of(settings.public_base)
        self._csp = (
            "default-src 'none'; style-src 'self' {origin} 'nonce-{nonce}'; "
            "img-src 'self' data:; frame-src 'self' {origin}; "
            "form-action 'self' {origin}; frame-ancestors 'none'; base-uri 'none'"
        ).replace("{origin}", origin)

    # -- who ---------------------------------------------------------------------------

    def who(self, request: Request) -> Signed | None:
        """The signed-in editor, or None (no cookie, forged, expired, token revoked)."""
        session = self.codec.read(request, self.state.timestamp())
        if session is None:
            return None
        principal = self.codec.still_valid(
            self.state.sessions, session, self.state.settings.admin_token
        )
        return None if principal is None else Signed(session, principal)

    def to_sign_in(self, request: Request) -> Response:
        """No valid session. A page: 303 to the sign-in page, which sends the editor back
        (``next``). A form post: the sign-in page itself (401) saying that nothing was done
        and what to repeat, never a silent redirect that drops what was posted."""
        if request.method == "GET":
            target = SIGN_IN
            if _NEXT.fullmatch(request.url.path):
                target += "?next=" + quote(request.url.path, safe="/")
            response: Response = RedirectResponse(target, status_code=303, headers=NO_STORE)
        else:
            path = request.url.path
            notice = (
                "Your desk session has ended (or another browser signed in), so nothing was done"
            )
            if path == "/desk/issues":
                notice += " and the issue you pasted was not kept: paste it again"
            response = self.sign_in_page(
                request,
                notice=notice + ". Sign in, then repeat the last step.",
                next_path=_STEP.sub("", path),
                status=401,
            )
        if request.cookies.get(self.codec.cookie_name):
            self.codec.clear_cookie(response)  # a stale or forged cookie goes away
        return response

    def sign_in_page(
        self,
        request: Request,
        *,
        error: str = "",
        notice: str = "",
        next_path: str = "/desk",
        status: int = 200,
    ) -> Response:
        """The sign-in form; its CSRF token is bound to the browser's cookie (no session
        yet), so no other site can sign a browser in to an account of its choosing."""
        csrf = self.state.csrf
        browser, fresh = csrf.ensure_browser_id(request)
        response = self.page(
            "sign_in.html",
            {
                "title": "Sign in",
                "error": error,
                "notice": notice,
                "next": self.safe_next(next_path),
                "csrf_token": csrf.issue(SIGN_IN, self.state.timestamp(), browser),
            },
            signed=None,
            status=status,
        )
        if fresh:
            csrf.set_cookie(response, browser)
        return response

    @staticmethod
    def safe_next(value: str) -> str:
        """A ``next`` that stays on the desk (never another site, never ``//host``)."""
        return value if _NEXT.fullmatch(value) else "/desk"

    # -- forms -------------------------------------------------------------------------

    def form_token(self, signed: Signed, path: str, bound: str = "") -> str:
        """A CSRF token for the form posting to ``path``, bound to this session and to
        ``bound`` (the confirmation form binds what it shows)."""
        binding = f"desk\x00{signed.session.sid}\x00{bound}"
        return self.state.csrf.issue(path, self.state.timestamp(), binding)

    def check_form(self, signed: Signed, token: str, path: str, bound: str = "") -> None:
        """403 unless ``token`` came from this session's form for ``path`` (and ``bound``)."""
        binding = f"desk\x00{signed.session.sid}\x00{bound}"
        self.state.csrf.check(token, path, self.state.timestamp(), binding)

    # -- pages -------------------------------------------------------------------------

    def page(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        signed: Signed | None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A desk page: never cached, not indexed; its one style block runs by nonce."""
        nonce = secrets.token_urlsafe(16)
        full: dict[str, Any] = {"nonce": nonce, "signed": signed, "csrf_field": CSRF_FIELD}
        if signed is not None:
            full["sign_out_token"] = self.form_token(signed, "/desk/sign-out")
        full.update(context)
        body = self.state.pages.render(f"desk/{name}", full)
        out = {**NO_STORE, "Content-Security-Policy": self._csp.replace("{nonce}", nonce)}
        out.update(headers or {})
        return HTMLResponse(body, status_code=status, headers=out)
