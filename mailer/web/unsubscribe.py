"""``/unsubscribe/{token}``: a page with one button, its form post, and RFC 8058 one-click.

* ``GET`` only shows the button: mail scanners and link previews follow links, and a GET
  must never unsubscribe anyone.
* ``POST`` with the body ``List-Unsubscribe=One-Click`` (urlencoded or multipart; what a
  mailbox provider sends for the ``List-Unsubscribe-Post`` header) unsubscribes from the
  token's list at once, with no cookie or CSRF token, and answers 200 with a short text
  body, however often it is repeated.
* Any other ``POST`` is the page's form: CSRF-checked; ``scope`` = ``list`` (this list) or
  ``all``; ``action=resubscribe`` (from the result page) only *starts* a fresh double
  opt-in for this list: the reader is pending and gets a confirmation mail
  (docs/architecture.md principle 9: a link never re-activates anyone, nor lifts a
  suppression).

The signed token alone names the subscriber and the list; no form field can point the
action at anyone else. The token never expires, so it can only ever unsubscribe: its pages
hand out no preferences link (that would renew, for whoever holds an old or forwarded
email, the preferences its expired link no longer opens).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from sqlalchemy import select
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mailer.errors import TokenError
from mailer.render.tokens import Claims
from mailer.urls import archive_index_url, subscribe_url
from mailer.web.common import actor, form_fields, link_problem
from mailer.web.confirm_mail import confirmation_for, deliver
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.forms import Form, read_form
from mailer.web.state import WebState, web_state
from subscribers import store
from subscribers.models import MailingList, Subscriber, Subscription, SubscriptionStatus

router = APIRouter()

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def is_one_click(form: Form) -> bool:
    return form.get(ONE_CLICK_FIELD).strip().lower() == ONE_CLICK_VALUE.lower()


@dataclass(frozen=True)
class Target:
    """What a verified token points at, read in one go."""

    claims: Claims
    email: str | None
    list_name: str | None
    list_slug: str | None
    status: str | None
    other_active: int
    lang: str = "en"  # the list's: its pages speak it


def _target(state: WebState, claims: Claims) -> Target:
    with state.sessions() as session:
        sub = session.get(Subscriber, claims.subscriber_id)
        mlist = session.get(MailingList, claims.list_id)
        subs = (
            list(
                session.scalars(
                    select(Subscription).where(Subscription.subscriber_id == claims.subscriber_id)
                )
            )
            if sub is not None
            else []
        )
    status = next((s.status for s in subs if s.list_id == claims.list_id), None)
    others = sum(
        1
        for s in subs
        if s.list_id != claims.list_id and s.status != SubscriptionStatus.UNSUBSCRIBED
    )
    return Target(
        claims,
        sub.email if sub else None,
        mlist.name if mlist else None,
        mlist.slug if mlist else None,
        status,
        others,
        mlist.lang if mlist else "en",
    )


def _path(token: str) -> str:
    return f"/unsubscribe/{token}"


@router.get("/unsubscribe/{token}")
def unsubscribe_page(request: Request, token: str) -> Response:
    state = web_state(request)
    try:
        claims = state.signer.verify(token, "unsubscribe", now=state.now())
    except TokenError as err:
        return link_problem(state, request, token, "unsubscribe", err)
    target = _target(state, claims)
    return state.pages.response(
        "unsubscribe.html",
        {
            "brand": target.list_name or "Newsletter",
            "lang": target.lang,
            "target": target,
            **form_fields(state, _path(token)),
        },
        private=True,
        headers={"X-Robots-Tag": "noindex"},
    )


@router.post("/unsubscribe/{token}")
async def unsubscribe_post(request: Request, token: str) -> Response:
    state = web_state(request)
    form = await read_form(request)
    if is_one_click(form):
        return await run_in_threadpool(_one_click, state, request, token)
    state.csrf.check(form.get(CSRF_FIELD), _path(token), state.timestamp())
    return await run_in_threadpool(_form_post, state, request, token, form)


def _one_click(state: WebState, request: Request, token: str) -> Response:
    try:
        claims = state.signer.verify(token, "unsubscribe", now=state.now())
    except TokenError:
        return PlainTextResponse("Invalid unsubscribe link.\n", status_code=400)
    with state.sessions.begin() as session:
        store.unsubscribe(
            session,
            claims.subscriber_id,
            claims.list_id,
            actor=actor(request, "web:one-click"),
        )
    return PlainTextResponse("Unsubscribed.\n", headers={"Cache-Control": "no-store"})


def _form_post(state: WebState, request: Request, token: str, form: Form) -> Response:
    try:
        claims = state.signer.verify(token, "unsubscribe", now=state.now())
    except TokenError as err:
        return link_problem(state, request, token, "unsubscribe", err)
    action = form.get("action", "unsubscribe")
    scope = form.get("scope", "list")
    if action not in ("unsubscribe", "resubscribe") or scope not in ("list", "all"):
        return state.pages.response(
            "error.html",
            {
                "title": "Please check the form",
                "message": "Choose this list or all lists, then press the button.",
                "status": 400,
            },
            status=400,
            private=True,
        )
    if action == "resubscribe":
        return _resubscribe(state, request, token, claims)
    with state.sessions.begin() as session:
        changed = store.unsubscribe(
            session,
            claims.subscriber_id,
            claims.list_id if scope == "list" else None,
            actor=actor(request, "web:unsubscribe"),
        )
    del changed  # idempotent: the page says the same whether it changed anything or not
    target = _target(state, claims)
    return state.pages.response(
        "unsubscribe_done.html",
        {
            "brand": target.list_name or "Newsletter",
            "lang": target.lang,
            "target": target,
            "scope": scope,
            **form_fields(state, _path(token)),
        },
        private=True,
    )


def _resubscribe(state: WebState, request: Request, token: str, claims: Claims) -> Response:
    """Subscribe again, from the result page: a fresh double opt-in, never an activation.
    The subscription turns pending and a confirmation mail goes out (unless the address
    had too many lately); only the reader's press of its button makes it active again."""
    who = actor(request, "web:resubscribe")
    mail = None
    with state.sessions.begin() as session:
        sub = session.get(Subscriber, claims.subscriber_id)
        mlist = session.get(MailingList, claims.list_id)
        if sub is not None and mlist is not None:
            result = store.subscribe(session, sub.email, mlist, actor=who, self_service=True)
            limited = state.address_limiter.hit(sub.email, state.timestamp()) is not None
            if result.needs_confirmation and not limited:
                mail = confirmation_for(state, mlist, result.subscription, sub.email)
    target = _target(state, claims)
    response = state.pages.response(
        "resubscribed.html",
        {
            "brand": target.list_name or "Newsletter",
            "lang": target.lang,
            "target": target,
            "archive_url": archive_index_url(state.settings, target.list_slug)
            if target.list_slug
            else None,
            "subscribe_url": subscribe_url(state.settings, target.list_slug)
            if target.list_slug
            else None,
            "unsubscribe_url": state.settings.public_base + _path(token),
        },
        private=True,
    )
    if mail is not None:
        response.background = BackgroundTask(deliver, state, mail)
    return response
