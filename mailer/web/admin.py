"""``/admin``: the ops dashboard, behind ``MAILER_ADMIN_TOKEN``.

    MAILER_ADMIN_TOKEN unset            -> every /admin URL is 404 (admin is off)
    no or wrong credentials             -> 401 with a Basic challenge (browsers prompt)
    Authorization: Bearer <token>       -> in
    Authorization: Basic <any>:<token>  -> in (any user name; the token is the password)

    GET  /admin                      campaigns (progress, state, rates), bounce and complaint
                                     rates per day as SVG charts with SES/Gmail thresholds,
                                     recent bounces and complaints with diagnostic codes,
                                     recipient domains, suppression growth
    GET  /admin/suppressions?q=      the suppression list, searchable, with a remove button
    POST /admin/suppressions/remove  CSRF-checked; ``subscribers.store.unsuppress`` writes the
                                     consent ledger (source "admin"); 303 back to the list
    GET  /admin/stats.json           the same figures as ``mailer stats --json``

Every figure comes from :mod:`mailer.ops.stats`, so the dashboard, the CLI and /metrics agree.
Pages run no script; charts are drawn on the server (:mod:`mailer.web.admin_charts`); the
one ``<style>`` block is allowed by a per-response CSP nonce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from mailer.config import Settings
from mailer.ops import stats
from mailer.web.admin_charts import Line, Rule, bar_chart, line_chart, progress_bar
from mailer.web.state import WebState, web_state
from subscribers import store

__all__ = ["admin_router", "check_admin_auth"]

log = logging.getLogger(__name__)

REALM = "brief-mailer admin"
PAGE_SIZE = 100
DAYS = 30
_LEVEL_CLASS = {
    stats.Level.NA: "na",
    stats.Level.OK: "ok",
    stats.Level.WARN: "warn",
    stats.Level.CRITICAL: "crit",
}


# -- authentication ------------------------------------------------------------------------


def check_admin_auth(settings: Settings, authorization: str | None) -> None:
    """404 when admin is off; 401 (with a challenge) unless the header carries the token."""
    token = settings.admin_token
    if not token:
        raise HTTPException(404)
    presented = _presented_token(authorization or "")
    if presented is None or not hmac.compare_digest(
        presented.encode("utf-8"), token.encode("utf-8")
    ):
        raise HTTPException(
            401,
            "admin credentials needed",
            headers={
                "WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"',
                "Cache-Control": "no-store",
            },
        )


def _presented_token(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep else None
    return None


def require_admin(request: Request) -> WebState:
    state = web_state(request)
    check_admin_auth(state.settings, request.headers.get("authorization"))
    return state


def _csrf_binding(settings: Settings) -> str:
    """Form tokens are bound to the admin token: a token change voids open forms."""
    return hashlib.sha256(b"admin-csrf\x00" + settings.admin_token.encode()).hexdigest()[:32]


# -- pages ---------------------------------------------------------------------------------


def _page(state: WebState, name: str, context: dict[str, Any], *, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    body = state.pages.env.get_template(name).render({"nonce": nonce, **context})
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            "X-Robots-Tag": "noindex, nofollow",
        },
    )


#: the page helper of every /admin page, also those of other modules (mailer.web.admin_links)
admin_page = _page


def _rate(check: stats.RateCheck) -> dict[str, Any]:
    source = check.crossed[-1].source if check.crossed else ""
    text = "–" if check.rate is None else f"{check.rate:.2%}"
    return {"text": text, "cls": _LEVEL_CLASS[check.level], "note": source}


def _counts_view(c: stats.Counts) -> dict[str, Any]:
    bounce, complaint = c.checks
    return {"c": c, "bounce": _rate(bounce), "complaint": _rate(complaint)}


def _charts(report: stats.StatsReport, settings: Settings) -> dict[str, Markup]:
    labels = [d.day.strftime("%m-%d") for d in report.daily]
    bounce_rules = [
        Rule(0.05, "SES review", "#d97706"),
        Rule(0.10, "SES pause", "#dc2626"),
    ]
    if settings.guard_bounce_rate > 0:
        bounce_rules.insert(0, Rule(settings.guard_bounce_rate, "guard", "#6b7280"))
    complaint_rules = [
        Rule(0.001, "SES review / Gmail", "#d97706"),
        Rule(0.003, "Gmail never", "#b91c1c"),
        Rule(0.005, "SES pause", "#7f1d1d"),
    ]
    sup_days = report.suppressions.days
    return {
        "bounce": Markup(  # noqa: S704  (admin_charts escapes every text it draws)
            line_chart(
                f"Hard-bounce rate per day of sending, last {report.days} days",
                labels,
                [Line("bounce rate", [d.bounce_rate for d in report.daily], "#2563eb")],
                bounce_rules,
            )
        ),
        "complaint": Markup(  # noqa: S704
            line_chart(
                f"Complaint rate per day of sending, last {report.days} days",
                labels,
                [Line("complaint rate", [d.complaint_rate for d in report.daily], "#7c3aed")],
                complaint_rules,
            )
        ),
        "sent": Markup(  # noqa: S704
            bar_chart("Messages sent per day", labels, [d.sent for d in report.daily])
        ),
        "suppressions": Markup(  # noqa: S704
            bar_chart(
                "Addresses added to the suppression list per day",
                [d.day.strftime("%m-%d") for d in sup_days],
                [sum(d.added.values()) for d in sup_days],
                "#dc2626",
            )
        ),
    }


def _bar(status: str, counts: stats.Counts) -> Markup:
    """A campaign's bar: done rows in green; a cancelled or expired one shows what was sent,
    in grey (its skipped readers are final, not delivered: a full green bar said "done")."""
    if status in ("cancelled", "expired") and counts.total:
        sent = counts.sent / counts.total
        bar = progress_bar(sent, f"{status}: {sent:.0%} sent", color="#9ca3af")
    else:
        bar = progress_bar(counts.progress, f"{counts.progress or 0:.0%} done")
    return Markup(bar)  # noqa: S704 - our own SVG, labels escaped by progress_bar


def dashboard(request: Request, state: WebState = Depends(require_admin)) -> Response:
    now = state.now()
    with state.sessions() as session:
        report = stats.collect(session, days=DAYS, now=now)
        week = stats.counts_since(session, now - timedelta(days=7))
        recent = stats.recent_feedback(session, limit=25)
        depth = sum(stats.queue_depths(session).values())
    campaigns = [
        {
            "s": c,
            "view": _counts_view(c.counts),
            "bar": _bar(c.status, c.counts),
        }
        for c in report.campaigns
    ]
    return _page(
        state,
        "admin.html",
        {
            "title": "Dashboard",
            "active": "dashboard",
            "report": report,
            "totals": _counts_view(report.totals),
            "week": _counts_view(week),
            "campaigns": campaigns,
            "domains": [{"d": d, "view": _counts_view(d.counts)} for d in report.domains],
            "recent": recent,
            "queue_depth": depth,
            "charts": _charts(report, state.settings),
            "settings": state.settings,
            "generated": now,
        },
    )


def suppressions(
    request: Request,
    q: str = Query("", max_length=320),
    page: int = Query(1, ge=1, le=100_000),
    removed: str = Query("", max_length=320),
    missing: str = Query("", max_length=320),
    state: WebState = Depends(require_admin),
) -> Response:
    with state.sessions() as session:
        rows = store.list_suppressions(
            session, search=q or None, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
        )
        growth = stats.suppression_growth(session, state.now() - timedelta(days=DAYS))
    token = state.csrf.issue(
        "/admin/suppressions/remove", state.timestamp(), _csrf_binding(state.settings)
    )
    return _page(
        state,
        "admin_suppressions.html",
        {
            "title": "Suppression list",
            "active": "suppressions",
            "rows": rows[:PAGE_SIZE],
            "more": len(rows) > PAGE_SIZE,
            "page": page,
            "q": q,
            "removed": removed,
            "missing": missing,
            "growth": growth,
            "csrf_token": token,
        },
    )


def remove_suppression(
    request: Request,
    email: str = Form(..., max_length=320),
    csrf_token: str = Form("", max_length=200),
    q: str = Form("", max_length=320),
    state: WebState = Depends(require_admin),
) -> Response:
    state.csrf.check(
        csrf_token,
        "/admin/suppressions/remove",
        state.timestamp(),
        _csrf_binding(state.settings),
    )
    client = request.client.host if request.client else None
    actor = store.Actor("admin", ip=client, user_agent=request.headers.get("user-agent"))
    with state.sessions.begin() as session:
        done = store.unsuppress(session, email, actor=actor)
    if done:
        log.warning("admin removed %s from the suppression list (from %s)", email, client)
    params = {"q": q, ("removed" if done else "missing"): email}
    return RedirectResponse(
        "/admin/suppressions?" + urlencode({k: v for k, v in params.items() if v}),
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )


def stats_json(
    days: int = Query(DAYS, ge=1, le=3650), state: WebState = Depends(require_admin)
) -> Response:
    with state.sessions() as session:
        report = stats.collect(session, days=days, now=state.now())
    return JSONResponse(report.to_json(), headers={"Cache-Control": "no-store"})


def admin_router() -> APIRouter:
    """The /admin routes; everything they need comes from the app's WebState."""
    router = APIRouter()
    router.add_api_route("/admin", dashboard, methods=["GET"], include_in_schema=False)
    router.add_api_route(
        "/admin/suppressions", suppressions, methods=["GET"], include_in_schema=False
    )
    router.add_api_route(
        "/admin/suppressions/remove",
        remove_suppression,
        methods=["POST"],
        include_in_schema=False,
    )
    router.add_api_route("/admin/stats.json", stats_json, methods=["GET"], include_in_schema=False)
    return router
