"""``/subscribe/{list}`` (double opt-in) and ``/confirm/{token}`` (a page with a button).

The answer to a subscribe post depends only on the list and what was typed, never on
whether the address was new, pending, active, unsubscribed or suppressed: no address
enumeration. Mail goes out after the response (a background task), so timing does not
tell either. Abuse limits: per IP (429 page; an IPv6 client's whole /64 counts as one) and
per address (silently no mail, so a stranger cannot bomb an inbox), plus a honeypot field
bots fill in.

``GET /confirm/{token}`` only shows a button: mail scanners follow links, and a GET must
never subscribe anyone. The ``POST`` (CSRF-checked) confirms, once: the token carries the
subscription's consent version, which the confirm itself and any later change bump.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailer.errors import (
    ConflictError,
    InputError,
    InvalidAddressError,
    NotFoundError,
    TokenError,
)
from mailer.render.i18n import gettext_for
from mailer.render.tokens import Claims, preferences_url
from mailer.urls import archive_index_url, subscribe_url
from mailer.web.common import (
    actor,
    all_lists,
    client_network,
    form_fields,
    link_problem,
    list_by_slug,
)
from mailer.web.confirm_mail import (
    ConfirmationMail,
    Due,
    claim_welcome,
    confirmation_for,
    deliver,
    send_due,
)
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.forms import EMAIL_MAX, FieldError, Form, clean_name, read_form
from mailer.web.security import origin_of, page_csp
from mailer.web.state import WebState, web_state
from subscribers import list_settings, store
from subscribers.addresses import normalize_email
from subscribers.models import MailingList, Subscriber, Subscription, SubscriptionStatus
from subscribers.store import Actor

log = logging.getLogger(__name__)

router = APIRouter()

HONEYPOT = "website"
Status = SubscriptionStatus


@dataclass(frozen=True)
class ListInfo:
    slug: str
    name: str
    double_opt_in: bool
    lang: str = "en"  # the pages about this list speak it

    @classmethod
    def of(cls, mlist: MailingList) -> ListInfo:
        return cls(mlist.slug, mlist.name, mlist.double_opt_in, mlist.lang)


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
            "lang": info.lang,
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
    # this page runs one script of ours (static/tz.js: the browser's time zone)
    base = state.settings.base_url
    response.headers["Content-Security-Policy"] = (
        f"{page_csp(base)}; script-src 'self' {origin_of(base)}"
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
            "lang": info.lang,
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
    retry = state.ip_limiter.hit(client_network(request), state.timestamp())
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
        _ = gettext_for(info.lang)
        errors["email"] = _("Please enter a valid email address, like name@example.com.")
    name: str | None = None
    try:
        name = clean_name(raw_name)
    except FieldError as err:
        errors["name"] = err.text(info.lang)
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
    zone = _zone(form.get("time_zone"))
    try:
        mail = _record(state, info, address, name, who, zone)
    except IntegrityError:  # the same new address posted twice at once: the row exists now
        mail = _record(state, info, address, name, who, zone)
    response = _done_page(state, info, address)
    if isinstance(mail, ConfirmationMail):
        response.background = BackgroundTask(deliver, state, mail)
    elif mail is not None:  # a single opt-in list: active at once, welcomed once
        response.background = BackgroundTask(send_due, state, mail)
    return response


def _zone(value: str) -> str | None:
    """The browser's time zone from the hidden field, if it is an IANA name (an old browser
    may send something else: the list's default zone applies then)."""
    try:
        return list_settings.clean_time_zone(value[:64]) if value.strip() else None
    except InputError:
        return None


def _record(
    state: WebState,
    info: ListInfo,
    address: str,
    name: str | None,
    who: Actor,
    zone: str | None = None,
) -> ConfirmationMail | Due | None:
    """Subscribe in one transaction; the confirmation mail to send, if one is due, or the
    welcome mail's claimed row when this post made the reader active (single opt-in)."""
    with state.sessions.begin() as session:
        mlist = list_by_slug(session, info.slug)
        # A stranger must not rename an existing reader, nor move their morning: the name
        # and the time zone only seed new records.
        known = store.find_subscriber(session, address)
        before = session.scalar(
            select(Subscription.status).where(
                Subscription.subscriber_id == (known.id if known else None),
                Subscription.list_id == mlist.id,
            )
        )
        result = store.subscribe(
            session,
            address,
            mlist,
            actor=who,
            name=None if known is not None else name,
            self_service=True,
        )
        if known is None and zone is not None:
            result.subscriber.time_zone = zone
        if result.needs_confirmation:
            return confirmation_for(state, mlist, result.subscription, address)
        if result.subscription.status == Status.ACTIVE and before != Status.ACTIVE:
            return claim_welcome(session, result.subscriber.id, mlist, state.now())
        return None


# -- confirm: GET shows a button and changes nothing (scanners follow links); POST confirms --


def _confirm_path(token: str) -> str:
    return f"/confirm/{token}"


@dataclass(frozen=True)
class _Pending:
    """What a confirm link points at, read without changing anything."""

    info: ListInfo
    email: str
    stage: str  # "pending" (the button), "already" (this link did it), "stale"


def _look(state: WebState, claims: Claims) -> _Pending | None:
    with state.sessions() as session:
        mlist = session.get(MailingList, claims.list_id)
        sub = session.get(Subscriber, claims.subscriber_id)
        subn = session.scalar(
            select(Subscription).where(
                Subscription.subscriber_id == claims.subscriber_id,
                Subscription.list_id == claims.list_id,
            )
        )
        if mlist is None or sub is None or subn is None:
            return None
        if subn.status == Status.PENDING and subn.consent_version == claims.version:
            kind = "pending"
        elif subn.status == Status.ACTIVE and subn.consent_version == (claims.version or 0) + 1:
            kind = "already"
        else:
            kind = "stale"
        return _Pending(ListInfo.of(mlist), sub.email, kind)


@router.get("/confirm/{token}")
def confirm_page(request: Request, token: str) -> Response:
    """The page with the button; a GET never confirms anyone."""
    state = web_state(request)
    try:
        claims = state.signer.verify(token, "confirm", now=state.now())
    except TokenError as err:
        return link_problem(state, request, token, "confirm", err)
    found = _look(state, claims)
    if found is None:
        return _gone(state)
    if found.stage == "stale":
        return _stale(state, found.info)
    if found.stage == "already":
        return _confirmed(state, found.info, claims)
    return state.pages.response(
        "confirm.html",
        {
            "brand": found.info.name,
            "mlist": found.info,
            "lang": found.info.lang,
            "email": found.email,
            **form_fields(state, _confirm_path(token)),
        },
        private=True,
        headers={"X-Robots-Tag": "noindex"},
    )


@router.post("/confirm/{token}")
async def confirm_post(request: Request, token: str) -> Response:
    state = web_state(request)
    form = await read_form(request)
    state.csrf.check(form.get(CSRF_FIELD), _confirm_path(token), state.timestamp())
    return await run_in_threadpool(_confirm, state, request, token)


def _confirm(state: WebState, request: Request, token: str) -> Response:
    """Activates the subscription the link was sent for (recording IP, user agent and
    source), once; a link replaced by a later change (unsubscribe, newer opt-in) does not."""
    try:
        claims = state.signer.verify(token, "confirm", now=state.now())
    except TokenError as err:
        return link_problem(state, request, token, "confirm", err)
    assert claims.version is not None  # verify() guarantees it for confirm tokens
    welcome: Due | None = None
    try:
        with state.sessions.begin() as session:
            mlist = session.get(MailingList, claims.list_id)
            if mlist is None:
                raise NotFoundError("the list no longer exists")
            info = ListInfo.of(mlist)
            outcome = store.confirm(
                session,
                claims.subscriber_id,
                claims.list_id,
                version=claims.version,
                actor=actor(request, "web:confirm"),
            )
            if outcome == store.ConfirmOutcome.CONFIRMED:
                # claimed with the confirmation, once per subscription (system_mail)
                welcome = claim_welcome(session, claims.subscriber_id, mlist, state.now())
    except NotFoundError:
        return _gone(state)
    except ConflictError:
        return _stale(state, info)
    response = _confirmed(state, info, claims)
    if welcome is not None:
        response.background = BackgroundTask(send_due, state, welcome)
    return response


def _confirmed(state: WebState, info: ListInfo, claims: Claims) -> Response:
    return state.pages.response(
        "confirmed.html",
        {
            "brand": info.name,
            "mlist": info,
            "lang": info.lang,
            "archive_url": archive_index_url(state.settings, info.slug),
            "preferences_url": preferences_url(
                state.settings,
                state.signer,
                claims.subscriber_id,
                claims.list_id,
                now=state.now(),
            ),
        },
        private=True,
    )


def _stale(state: WebState, info: ListInfo) -> Response:
    _ = gettext_for(info.lang)
    return state.pages.response(
        "link_problem.html",
        {
            "lang": info.lang,
            "title": _("This confirmation link can no longer be used"),
            "message": _(
                "It was used already, or something changed since it was sent (you "
                "unsubscribed, or asked again and got a newer link). Nothing was changed."
            ),
            "brand": info.name,
            "offers": [(info.name, subscribe_url(state.settings, info.slug))],
            "ask_again": True,
        },
        status=409,
        private=True,
    )


def _gone(state: WebState) -> Response:
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
