"""The web app factory: reader pages now; webhook, admin and metrics routers plug in.

``create_app(settings)`` builds everything the app needs *when called* (engine, signer,
limiters, templates) and keeps it on ``app.state.web`` (:class:`WebState`), so several
apps with different settings can live in one process (tests do exactly that).

Adding a router is one line in :func:`_include_routers`, which receives the app and its
state, e.g. ``app.include_router(ses_webhook_router(state.settings, state.sessions))``.
Handlers reach the shared state with ``mailer.web.state.web_state(request)``.

Middleware, outermost first: security headers on every response; a request-body cap
(``MAILER_MAX_BODY_BYTES``; 16 KiB for the reader forms) answered with 413. Errors are
mapped to status codes and friendly pages by :mod:`mailer.web.errors`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailer.config import Settings
from mailer.feedback.sns import SNSVerifier
from mailer.render.tokens import Signer
from mailer.transports.base import Transport
from mailer.web import admin, archive, metrics, preferences, subscribe, unsubscribe, webhooks
from mailer.web.admin_links import admin_links_router
from mailer.web.api import api_router
from mailer.web.csrf import CsrfGuard
from mailer.web.desk import desk_router
from mailer.web.errors import install_error_handlers
from mailer.web.pages import Pages, static_files
from mailer.web.ratelimit import (
    HANDOVER_WINDOW,
    SIGN_IN_LIMIT,
    SIGN_IN_WINDOW,
    TEST_SENDS_LIMIT,
    TEST_SENDS_WINDOW,
    SlidingWindow,
    make_storage,
)
from mailer.web.security import BodyLimit, SecurityHeaders
from mailer.web.state import WebState, system_clock, web_state
from mailer.web.tracking import flush_tracking, install_tracking
from subscribers.db import make_engine, normalize_url, session_factory

#: Paths whose bodies are small forms (RFC 8058 posts included).
FORM_PREFIXES = ("/subscribe", "/unsubscribe", "/preferences", "/confirm")
FORM_MAX_BYTES = 16 * 1024


def create_app(
    settings: Settings,
    *,
    transport: Transport | None = None,
    clock: Callable[[], datetime] | None = None,
    sns_verifier: SNSVerifier | None = None,
) -> FastAPI:
    """The ASGI app for ``mailer serve``.

    Raises ConfigError when the settings cannot work (production without
    MAILER_SECRET_KEY). ``transport`` replaces MAILER_TRANSPORT (tests); ``clock`` returns
    the aware current time (tests move it to expire tokens and rate-limit windows);
    ``sns_verifier`` replaces the webhook's (tests and benchmarks inject its certificate
    fetcher).
    """
    secret = settings.require_secret_key()  # ConfigError in production without a key
    settings.validate()
    limits_storage = make_storage(settings.rate_limit_storage)  # ConfigError if unusable
    engine = make_engine(settings.database_url, **_waiting(settings))
    state = WebState(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        signer=Signer.from_settings(settings),
        pages=Pages(settings),
        csrf=CsrfGuard(secret, secure=settings.base_url.startswith("https://")),
        ip_limiter=SlidingWindow(
            settings.subscribe_ip_limit,
            settings.subscribe_window,
            storage=limits_storage,
            name="subscribe-ip",
        ),
        address_limiter=SlidingWindow(
            settings.subscribe_address_limit,
            settings.subscribe_window,
            storage=limits_storage,
            name="subscribe-address",
        ),
        test_send_limiter=SlidingWindow(
            TEST_SENDS_LIMIT, TEST_SENDS_WINDOW, storage=limits_storage, name="test-send"
        ),
        handover_limiter=SlidingWindow(
            settings.handover_limit, HANDOVER_WINDOW, storage=limits_storage, name="handover"
        ),
        sign_in_limiter=SlidingWindow(
            SIGN_IN_LIMIT, SIGN_IN_WINDOW, storage=limits_storage, name="desk-sign-in"
        ),
        clock=clock or system_clock,
        injected_transport=transport,
    )

    sns = sns_verifier or SNSVerifier(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            flush_tracking(_app)  # hits queued behind the redirect are written first
            sns.close()
            state.close()

    app = FastAPI(
        title="brief-mailer",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,  # no redirect is ever built from the request
        lifespan=lifespan,
    )
    app.state.web = state
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        small_prefixes=FORM_PREFIXES,
        small_bytes=FORM_MAX_BYTES,
    )
    app.add_middleware(SecurityHeaders, base_url=settings.public_base)
    app.mount("/static", static_files(settings), name="static")
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    _include_routers(app, state, sns)
    return app


def _include_routers(app: FastAPI, state: WebState, sns: SNSVerifier) -> None:
    """Every router of the app: one line each."""
    # /r, /o: the busiest routes, answered in front of FastAPI's routing (mailer.web.tracking)
    install_tracking(app, state)
    app.include_router(subscribe.router)
    app.include_router(unsubscribe.router)
    app.include_router(preferences.router)
    app.include_router(archive.router)
    app.include_router(webhooks.ses_webhook_router(state.settings, state.sessions, verifier=sns))
    app.include_router(admin.admin_router())
    app.include_router(admin_links_router())  # /admin/campaigns/N/links (tracking)
    app.include_router(metrics.metrics_router())
    app.include_router(desk_router(state))  # /desk (mailer.web.desk)
    app.include_router(api_router())  # /api/v1 (mailer.web.api)


def _waiting(settings: Settings) -> dict[str, Any]:
    """Engine options so a request waits at most MAILER_DB_TIMEOUT for the database (a
    locked SQLite file; a PostgreSQL server that does not answer) before it fails, and is
    answered 503 (mailer.web.unavailable), instead of SQLite's 30 s or TCP's minutes."""
    try:
        backend = make_url(normalize_url(settings.database_url)).get_backend_name()
    except ArgumentError:
        return {}  # make_engine names the problem
    if backend == "sqlite":
        return {"connect_args": {"timeout": settings.db_timeout}}
    if backend == "postgresql":  # libpq: whole seconds, at least 2
        return {
            "connect_args": {"connect_timeout": max(2, math.ceil(settings.db_timeout))},
            "idle_timeout": settings.db_idle_timeout,
        }
    return {}


def healthz(request: Request) -> Response:
    """200 when the database answers, 503 otherwise (for load balancers and monitors)."""
    state = web_state(request)
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:
        return JSONResponse(
            {"status": "unavailable", "database": type(err).__name__},
            status_code=503,
            headers={"Cache-Control": "no-store"},
        )
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
