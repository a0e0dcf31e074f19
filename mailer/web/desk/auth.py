"""Signing in to the desk with a token, and out again.

    GET  /desk/sign-in      the form (CSRF bound to the browser's cookie: no login CSRF)
    POST /desk/sign-in      token -> :func:`mailer.access.tokens.authenticate` (the API's own
                            check); counted per client network, 429 past the limit
    POST /desk/sign-out     CSRF-checked; the cookie is cleared

Every token may use the desk: ``editor`` is its role, ``ops`` may do everything.
"""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailer.access.tokens import authenticate
from mailer.web.common import client_network
from mailer.web.desk.context import NO_STORE, SIGN_IN, Desk
from mailer.web.forms import read_form

log = logging.getLogger(__name__)

PATH = SIGN_IN


class AuthRoutes:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def sign_in_form(self, request: Request) -> Response:
        if self.desk.who(request) is not None:
            return RedirectResponse("/desk", status_code=303, headers=NO_STORE)
        return self.desk.sign_in_page(request, next_path=request.query_params.get("next", "/desk"))

    async def sign_in(self, request: Request) -> Response:
        state = self.desk.state
        form = await read_form(request)
        next_path = self.desk.safe_next(form.get("next", "/desk"))
        state.csrf.check(
            form.get("csrf_token"), PATH, state.timestamp(), state.csrf.browser_id(request)
        )
        wait = state.sign_in_limiter.hit(client_network(request), state.timestamp())
        if wait is not None:
            seconds = math.ceil(wait)
            response = self.desk.sign_in_page(
                request,
                error=f"Too many sign-in attempts from your network. Try again in {seconds} s.",
                next_path=next_path,
                status=429,
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        raw = form.get("token").strip()
        principal = authenticate(state.sessions, raw, state.settings.admin_token, now=state.now())
        if principal is None:
            log.warning("desk: refused sign-in from %s", client_network(request))
            return self.desk.sign_in_page(
                request,
                error="That token is not valid (unknown, revoked or mistyped).",
                next_path=next_path,
                status=401,
            )
        session = self.desk.codec.new(principal, raw, state.timestamp())
        response = RedirectResponse(next_path, status_code=303, headers=NO_STORE)
        self.desk.codec.set_cookie(response, session)
        log.info("desk: %s signed in (%s)", principal.name, principal.role.value)
        return response

    async def sign_out(self, request: Request) -> Response:
        signed = self.desk.who(request)
        response = RedirectResponse(PATH, status_code=303, headers=NO_STORE)
        if signed is not None:
            form = await read_form(request)
            self.desk.check_form(signed, form.get("csrf_token"), "/desk/sign-out")
        self.desk.codec.clear_cookie(response)
        return response
