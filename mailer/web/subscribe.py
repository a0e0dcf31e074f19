"""``/subscribe/{list}`` (double opt-in) and ``/confirm/{token}``.

The answer to a subscribe post depends only on the list and what was typed, never on
whether the address was new, pending, active, unsubscribed or suppressed: no address
enumeration. Mail goes out after the response (a background task), so timing does not
tell either. Abuse limits: per IP (429 page) and per address (silently no mail, so a
stranger cannot bomb an inbox), plus a honeypot field bots fill in.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailer.errors import InvalidAddressError, MailerError, NotFoundError, TokenError
from mailer.render.tokens import preferences_url
from mailer.web.common import actor, all_lists, link_problem, list_by_slug
from mailer.web.confirm_mail import ConfirmationMail, send_confirmation
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.forms import EMAIL_MAX, FieldError, Form, clean_name, read_form
from mailer.web.state import WebState, client_ip, web_state
from mailer.web.urls import archive_index_url, subscribe_url
from subscribers import store
from subscribers.addresses import normalize_email
from subscribers.models import MailingList
from subscribers.store import Actor

log = logging.getLogger(__name__)

router = APIRouter()

HONEYPOT = "website"


@dataclass(frozen=True)
class ListInfo:
    slug: str
    name: str
    double_opt_in: bool

    @classmethod
    def of(cls, mlist: MailingList) -> ListInfo:
        return cls(mlist.slug, mlist.name, mlist.double_opt_in)


def _form_page(
    state: WebState,
    request: Request,
    info: ListInfo,
    *,
    email: str = "",
    name: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    browser_id, new = state.csrf.ensure_browser_id(request)
    path = f"/subscribe/{info.slug}"
    response = state.pages.response(
        "subscribe.html",
        {
            "brand": info.name,
            "mlist": info,
            "action": state.settings.public_base + path,
            "csrf_field": CSRF_FIELD,
            "csrf_token": state.csrf.issue(path, state.timestamp(), browser_id),
            "honeypot": HONEYPOT,
            "email": email[:EMAIL_MAX],
            "name": name[:200],
            "errors": errors or {},
            "archive_url": archive_index_url(state.settings, info.slug),
        },
        status=status,
        private=True,
    )
    if new:
        state.csrf.set_cookie(response, browser_id)
    return response


def _done_page(state: WebState, info: ListInfo, email: str) -> Response:
    """The same page for every outcome (see the module docstring)."""
    return state.pages.response(
        "subscribe_done.html",
        {
            "brand": info.name,
            "mlist": info,
            "email": email,
            "archive_url": archive_index_url(state.settings, info.slug),
        },
        private=True,
    )


@router.get("/subscribe")
def subscribe_index(request: Request) -> Response:
    """Every list with its subscribe page (the target of links that name no list)."""
    state = web_state(request)
    with state.sessions() as session:
        lists = [ListInfo.of(m) for m in all_lists(session)]
    return state.pages.response(
        "lists.html",
        {
            "title": "Subscribe",
            "lists": [(m.name, subscribe_url(state.settings, m.slug), "Subscribe") for m in lists],
        },
    )


@router.get("/subscribe/{slug}")
def subscribe_form(request: Request, slug: str, email: str = "", name: str = "") -> Response:
    """The form; ``?email=&name=`` prefill it (the embed snippet posts here with GET)."""
    state = web_state(request)
    with state.sessions() as session:
        info = ListInfo.of(list_by_slug(session, slug))
    return _form_page(state, request, info, email=email.strip(), name=name.strip())


@router.post("/subscribe/{slug}")
async def subscribe_post(request: Request, slug: str) -> Response:
    state = web_state(request)
    form = await read_form(request)
    retry = state.ip_limiter.hit(client_ip(request), state.timestamp())
    if retry is not None:
        raise HTTPException(429, headers={"Retry-After": str(math.ceil(retry))})
    path = f"/subscribe/{slug}"
    state.csrf.check(form.get(CSRF_FIELD), path, state.timestamp(), state.csrf.browser_id(request))
    return await run_in_threadpool(_subscribe, state, request, slug, form)


def _subscribe(state: WebState, request: Request, slug: str, form: Form) -> Response:
    with state.sessions() as session:
        info = ListInfo.of(list_by_slug(session, slug))
    raw_email = form.get("email").strip()
    raw_name = form.get("name")
    errors: dict[str, str] = {}
    address = ""
    try:
        if len(raw_email) > EMAIL_MAX:
            raise InvalidAddressError("too long")
        address = normalize_email(raw_email)
    except InvalidAddressError:
        errors["email"] = "Please enter a valid email address, like name@example.com."
    name: str | None = None
    try:
        name = clean_name(raw_name)
    except FieldError as err:
        errors["name"] = str(err)
    if errors:
        return _form_page(
            state, request, info, email=raw_email, name=raw_name, errors=errors, status=422
        )
    if form.get(HONEYPOT).strip():
        log.info("subscribe to %s: honeypot filled, ignored", info.slug)
        return _done_page(state, info, address)
    if state.address_limiter.hit(address, state.timestamp()) is not None:
        log.info("subscribe to %s: per-address limit reached, no mail sent", info.slug)
        return _done_page(state, info, address)
    who = actor(request, "web:subscribe")
    try:
        mail = _record(state, info, address, name, who)
    except IntegrityError:  # the same new address posted twice at once: the row exists now
        mail = _record(state, info, address, name, who)
    response = _done_page(state, info, address)
    if mail is not None:
        response.background = BackgroundTask(_send, state, mail)
    return response


def _record(
    state: WebState, info: ListInfo, address: str, name: str | None, who: Actor
) -> ConfirmationMail | None:
    """Subscribe in one transaction; the confirmation mail to send, if one is due."""
    with state.sessions.begin() as session:
        mlist = list_by_slug(session, info.slug)
        # A stranger must not rename an existing reader: the name only seeds new records.
        known = store.find_subscriber(session, address) is not None
        result = store.subscribe(
            session, address, mlist, actor=who, name=None if known else name, self_service=True
        )
        if not result.needs_confirmation:
            return None
        return _confirmation(state, mlist, result.subscriber.id, address)


def _confirmation(
    state: WebState, mlist: MailingList, subscriber_id: int, address: str
) -> ConfirmationMail:
    expires_at = state.now() + timedelta(seconds=state.settings.confirm_ttl)
    token = state.signer.sign("confirm", subscriber_id, mlist.id, expires_at=expires_at)
    return ConfirmationMail(
        to=address,
        list_name=mlist.name,
        from_address=mlist.from_address,
        reply_to=mlist.reply_to,
        confirm_url=f"{state.settings.public_base}/confirm/{token}",
        expires_at=expires_at,
    )


def _send(state: WebState, mail: ConfirmationMail) -> None:
    try:
        message_id = send_confirmation(mail, state.settings, state.transport())
    except MailerError as err:
        log.error("confirmation mail for a subscribe to %r not sent: %s", mail.list_name, err)
        return
    log.info("confirmation mail sent (%s)", message_id)


@router.get("/confirm/{token}")
def confirm(request: Request, token: str) -> Response:
    """Activates the subscription (recording IP, user agent and source) and says thanks."""
    state = web_state(request)
    try:
        claims = state.signer.verify(token, "confirm", now=state.now())
    except TokenError as err:
        return link_problem(state, request, token, "confirm", err)
    try:
        with state.sessions.begin() as session:
            mlist = session.get(MailingList, claims.list_id)
            if mlist is None:
                raise NotFoundError("the list no longer exists")
            store.confirm(
                session, claims.subscriber_id, claims.list_id, actor=actor(request, "web:confirm")
            )
            info = ListInfo.of(mlist)
    except NotFoundError:
        with state.sessions() as session:
            lists = all_lists(session)
        return state.pages.response(
            "link_problem.html",
            {
                "title": "This subscription no longer exists",
                "message": "It may have been removed in the meantime. You can subscribe again.",
                "offers": [(m.name, subscribe_url(state.settings, m.slug)) for m in lists],
                "ask_again": True,
            },
            status=404,
            private=True,
        )
    return state.pages.response(
        "confirmed.html",
        {
            "brand": info.name,
            "mlist": info,
            "archive_url": archive_index_url(state.settings, info.slug),
            "preferences_url": preferences_url(
                state.settings, state.signer, claims.subscriber_id, claims.list_id
            ),
        },
        private=True,
    )
