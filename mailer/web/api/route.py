"""How every ``/api/v1`` route is guarded and how it fails.

:class:`ApiRoute` wraps each handler: the bearer token is checked first (before the body
is read or validated, so a stranger learns nothing about the API from its validation
errors): no or bad token 401, a role that may not 403. Every error then leaves as JSON,
``{"error": "...", ...}``, whatever the client's Accept header, with the status of
:func:`status_for`; a file that does not parse is 422 with its ``line``.

A route names the role it needs with ``openapi_extra={"x-role": "ops"}`` (see
:func:`needs`), which the OpenAPI document then shows too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from mailer.access.tokens import Principal, Role, authenticate
from mailer.errors import (
    ConfigError,
    ForbiddenError,
    InputError,
    InvalidAddressError,
    IssueParseError,
    MailerError,
    NotFoundError,
    StoreError,
    TokenError,
    TransportError,
)
from mailer.web.state import web_state
from mailer.web.unavailable import RETRY_AFTER, database_unavailable

log = logging.getLogger(__name__)

ROLE_KEY = "x-role"
#: declared on every route so the OpenAPI document (and Swagger's Authorize) knows it
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="`Authorization: Bearer TOKEN`: a token of `mailer tokens create`, or "
    "MAILER_ADMIN_TOKEN (an ops token).",
)
CHALLENGE = 'Bearer realm="brief-mailer"'


class ApiError(Exception):
    """An answer other than 2xx, decided by a handler: status, message, extra JSON fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


def needs(role: Role) -> dict[str, Any]:
    """``openapi_extra`` of a route that needs ``role``."""
    return {ROLE_KEY: role.value}


def principal(request: Request) -> Principal:
    """Who the request is (set by :class:`ApiRoute` before the handler runs)."""
    found = getattr(request.state, "principal", None)
    assert isinstance(found, Principal)
    return found


def authorize(request: Request, role: Role) -> Principal:
    state = web_state(request)
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise ApiError(
            401,
            "this needs an Authorization: Bearer token (mailer tokens create)",
            headers={"WWW-Authenticate": CHALLENGE},
        )
    who = authenticate(state.sessions, raw.strip(), state.settings.admin_token, now=state.now())
    if who is None:
        raise ApiError(
            401,
            "the token is not valid (unknown or revoked)",
            headers={"WWW-Authenticate": CHALLENGE + ', error="invalid_token"'},
        )
    if not who.may(role):
        raise ApiError(403, f"this needs an {role.value} token; {who.name} is {who.role.value}")
    return who


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ApiRoute(APIRoute):
    """An API route: token first, then the handler, every failure as JSON."""

    def get_route_handler(self) -> Handler:
        original = super().get_route_handler()
        role = Role((self.openapi_extra or {}).get(ROLE_KEY, Role.OPS.value))

        async def handler(request: Request) -> Response:
            try:
                request.state.principal = await run_in_threadpool(authorize, request, role)
                return await original(request)
            except Exception as exc:  # every failure leaves as JSON (the module docstring)
                return error_response(request, exc)

        return handler


def status_for(exc: Exception) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ForbiddenError):
        return 403
    if isinstance(exc, InvalidAddressError | InputError | RequestValidationError):
        return 422
    if isinstance(exc, StoreError):
        return 409
    if isinstance(exc, TokenError):
        return 400
    if isinstance(exc, TransportError | ConfigError):
        return 503
    return 500


def error_json(
    status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": message, **extra},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The JSON answer to ``exc`` (a database that is away: 503 with Retry-After)."""
    if isinstance(exc, ClientDisconnect):  # the client left mid-body: nobody to tell
        return error_json(400, "the request body ended before its announced length")
    if database_unavailable(exc):
        log.warning("API %s %s: database unavailable", request.method, request.url.path)
        return error_json(
            503, "the database is unavailable; try again later", {"Retry-After": str(RETRY_AFTER)}
        )
    status = status_for(exc)
    if isinstance(exc, ApiError):
        return error_json(status, exc.message, exc.headers, **exc.extra)
    if isinstance(exc, IssueParseError):
        return error_json(422, str(exc), line=exc.line)
    if isinstance(exc, RequestValidationError):
        problems = [_problem(e) for e in exc.errors()][:20]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:3])
        return error_json(422, f"the request is not valid: {summary}", problems=problems)
    if isinstance(exc, HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_json(status, detail, exc.headers)
    if status >= 500:
        if isinstance(exc, MailerError):
            log.error("API %s %s: %s", request.method, request.url.path, exc)
            return error_json(status, "the service cannot do that right now; try again later")
        log.exception("API %s %s failed", request.method, request.url.path, exc_info=exc)
        return error_json(500, "internal error; nothing you sent caused it")
    return error_json(status, in_api_terms(str(exc)) if status == 409 else str(exc))


def _problem(error: Mapping[str, Any]) -> dict[str, str]:
    where = ".".join(str(part) for part in error.get("loc", ()))
    return {"where": where or "request", "problem": str(error.get("msg", "not valid"))[:200]}


#: the CLI's hints in the store's messages, as this API says them
_HINTS = (
    (re.compile(r"`mailer campaigns cancel (\d+)`"), r"POST /api/v1/campaigns/\1/cancel"),
    (re.compile(r"pass --force"), 'send with "force": true'),
    (re.compile(r"--force"), '"force": true'),
)


def in_api_terms(message: str) -> str:
    for pattern, replacement in _HINTS:
        message = pattern.sub(replacement, message)
    return message
