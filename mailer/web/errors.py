"""Errors -> status codes and a friendly page (or JSON for API clients). Never a traceback.

    NotFoundError                      404
    InvalidAddressError                422
    SuppressedError, ConflictError     409   (other StoreError: 409)
    InputError                         400   (bad input: a malformed payload, or a value
                                             that breaks a rule, e.g. a list slug)
    TokenError                         400
    TransportError, ConfigError        503   (the service, not the reader, is at fault)
    other MailerError                  500
    HTTPException                      its own status (403 CSRF, 413, 429 ...)
    database unreachable or locked     503 + Retry-After   (mailer.web.unavailable; also when
                                                            another error was raised from it)
    request validation                 400
    anything else                      500, logged

Messages shown are written for readers; internal details (paths, SQL, settings) only go to
the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailer.errors import (
    ConfigError,
    InputError,
    InvalidAddressError,
    MailerError,
    NotFoundError,
    StoreError,
    TokenError,
    TransportError,
)
from mailer.web.pages import Pages
from mailer.web.unavailable import RETRY_AFTER, UNAVAILABLE_ERRORS, database_unavailable

log = logging.getLogger(__name__)

_TITLES = {
    400: "Something is wrong with that request",
    403: "That form could not be accepted",
    404: "Page not found",
    405: "Not allowed",
    409: "That cannot be done right now",
    413: "That was too much",
    415: "Unsupported form",
    422: "Please check the form",
    429: "Too many requests",
    500: "Something went wrong on our side",
    503: "Temporarily unavailable",
}
_MESSAGES = {
    404: "There is nothing at this address. Check the link, or start again from the list's page.",
    405: "This page cannot be used that way.",
    429: "You have sent this form too often. Please wait a while and try again.",
    500: "We could not finish that. Nothing you did caused this; please try again later.",
    503: "We cannot do that right now. Please try again in a few minutes.",
}


def status_for(err: MailerError) -> int:
    if isinstance(err, NotFoundError):
        return 404
    if isinstance(err, InvalidAddressError):
        return 422
    if isinstance(err, StoreError):
        return 409
    if isinstance(err, InputError | TokenError):
        return 400
    if isinstance(err, TransportError | ConfigError):
        return 503
    return 500


def wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/"):  # the HTTP API answers JSON, whatever Accept says
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(
    request: Request,
    status: int,
    message: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    title = _TITLES.get(status, "Error")
    text = message or _MESSAGES.get(status, title)
    if wants_json(request):
        return JSONResponse({"error": text, "status": status}, status_code=status, headers=headers)
    state = getattr(request.app.state, "web", None)
    if state is None:  # pragma: no cover - only if the app was assembled by hand
        return JSONResponse({"error": text, "status": status}, status_code=status, headers=headers)
    pages: Pages = state.pages
    return pages.response(
        "error.html",
        {"title": title, "message": text, "status": status},
        status=status,
        headers=headers,
        private=True,
    )


async def _mailer_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MailerError)
    if database_unavailable(exc):
        return await _database_unavailable(request, exc)
    status = status_for(exc)
    if status >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        return error_response(request, status)
    if isinstance(exc, NotFoundError):
        return error_response(request, status)  # no list names or addresses echoed
    return error_response(request, status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) and exc.status_code < 500 else None
    if exc.status_code in (404, 405):
        detail = None
    return error_response(request, exc.status_code, detail, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    return error_response(request, 400, "Some part of that request is not valid.")


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """The service, not the request, is at fault: come back later (no traceback, one line)."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    log.warning("database unavailable (%s): %s", type(exc).__name__, first_line[:200])
    headers = {"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"}
    return error_response(request, 503, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    if database_unavailable(exc):
        return await _database_unavailable(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MailerError, _mailer_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for unavailable in UNAVAILABLE_ERRORS:
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
