"""``/preferences/{token}``: which lists, and the name we greet the reader by.

The token (from an email's footer, or from our own pages) names the subscriber; the form
can only change that subscriber, and only the lists it may touch: those they are
subscribed to (active or pending) and the one the link was sent for. Unticking
unsubscribes. Ticking a list they are not on only *starts* a fresh double opt-in
(pending, and a confirmation mail): a link never activates anyone, nor lifts a suppression
(docs/architecture.md principle 9). Preferences links expire (``MAILER_PREFERENCES_TTL``); every
issue carries a fresh one. Each change goes through the store, which writes the consent
ledger; a name change is recorded as ``preferences``.

``/preferences`` (no token) is "mail me my preferences link": an address field whose answer
is the same page for every address (on a list or not), with the subscribe form's per-IP and
per-address limits and honeypot; the look-up and the mail happen after the answer, so its
timing tells nothing either (:func:`mailer.sending.system_mail.send_preferences_link`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailer.errors import InputError, InvalidAddressError, TokenError
from mailer.feedback.tracking.store import forget_subscriber
from mailer.render.i18n import gettext_for
from mailer.render.tokens import Claims
from mailer.sending import system_mail
from mailer.urls import archive_index_url, subscribe_url
from mailer.web.common import actor, all_lists, client_network, form_fields, link_problem
from mailer.web.confirm_mail import ConfirmationMail, confirmation_for, deliver_all
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.forms import EMAIL_MAX, FieldError, Form, clean_name, read_form
from mailer.web.state import WebState, web_state
from mailer.web.subscribe import HONEYPOT
from subscribers import list_settings, store
from subscribers.addresses import normalize_email
from subscribers.list_settings import LANGUAGES
from subscribers.models import MailingList, Subscriber, Subscription, SubscriptionStatus
from subscribers.store import Actor
from subscribers.tracking import is_opted_out, set_opt_out

router = APIRouter()

Status = SubscriptionStatus


@dataclass(frozen=True)
class Choice:
    slug: str
    name: str
    status: str | None  # None: not on it (the list this link was sent for)
    archive_url: str

    @property
    def checked(self) -> bool:
        return self.status in (Status.ACTIVE, Status.PENDING)


def _path(token: str) -> str:
    return f"/preferences/{token}"


def _verify(state: WebState, token: str) -> Claims:
    return state.signer.verify(token, "preferences", now=state.now())


def _touchable(
    session: Session, sub: Subscriber, claims: Claims
) -> list[tuple[MailingList, str | None]]:
    """(list, status) of every list this link may change, by name."""
    statuses = {
        s.list_id: s.status
        for s in session.scalars(select(Subscription).where(Subscription.subscriber_id == sub.id))
    }
    return [
        (m, statuses.get(m.id))
        for m in all_lists(session)
        if m.id == claims.list_id or statuses.get(m.id) in (Status.ACTIVE, Status.PENDING)
    ]


def _page(
    state: WebState,
    token: str,
    claims: Claims,
    *,
    saved: bool = False,
    confirm_sent: tuple[str, ...] = (),
    errors: dict[str, str] | None = None,
    name_value: str | None = None,
    zone_value: str | None = None,
    status: int = 200,
) -> Response:
    with state.sessions() as session:
        sub = session.get(Subscriber, claims.subscriber_id)
        if sub is None:  # erased: the page still speaks the link's list's language
            home = session.get(MailingList, claims.list_id)
            lang = home.lang if home else "en"
            _ = gettext_for(lang)
            return state.pages.response(
                "error.html",
                {
                    "lang": lang,
                    "title": _("Nothing held about this address"),
                    "message": _("This address is no longer on any of our lists."),
                    "status": 404,
                },
                status=404,
                private=True,
            )
        touchable = _touchable(session, sub, claims)
        choices = [
            Choice(m.slug, m.name, st, archive_index_url(state.settings, m.slug))
            for m, st in touchable
        ]
        shown = {m.id for m, _ in touchable}
        others = [
            (m.name, subscribe_url(state.settings, m.slug))
            for m in all_lists(session)
            if m.id not in shown
        ]
        home = session.get(MailingList, claims.list_id)
        email, name, zone = sub.email, sub.name or "", sub.time_zone or ""
        lang = home.lang if home else "en"
        untracked = is_opted_out(session, sub.id)
    return state.pages.response(
        "preferences.html",
        {
            "brand": home.name if home else "Newsletter",
            "lang": lang,
            "email": email,
            "name": name if name_value is None else name_value,
            "time_zone": zone if zone_value is None else zone_value[:64],
            "choices": choices,
            "no_tracking": untracked,
            "others": others,
            "saved": saved,
            "confirm_sent": confirm_sent,
            "errors": errors or {},
            **form_fields(state, _path(token)),
        },
        status=status,
        private=True,
        headers={"X-Robots-Tag": "noindex"},
    )


@router.get("/preferences/{token}")
def preferences_page(request: Request, token: str) -> Response:
    state = web_state(request)
    try:
        claims = _verify(state, token)
    except TokenError as err:
        return link_problem(state, request, token, "preferences", err)
    return _page(state, token, claims)


@router.post("/preferences/{token}")
async def preferences_post(request: Request, token: str) -> Response:
    state = web_state(request)
    form = await read_form(request)
    state.csrf.check(form.get(CSRF_FIELD), _path(token), state.timestamp())
    return await run_in_threadpool(_save, state, request, token, form)


def _save(state: WebState, request: Request, token: str, form: Form) -> Response:
    try:
        claims = _verify(state, token)
    except TokenError as err:
        return link_problem(state, request, token, "preferences", err)
    raw_name, raw_zone = form.get("name"), form.get("time_zone")
    with state.sessions() as session:
        home = session.get(MailingList, claims.list_id)
        lang = home.lang if home else "en"  # the page's, for the messages next to fields
    errors: dict[str, str] = {}
    name: str | None = None
    try:
        name = clean_name(raw_name)
    except FieldError as err:
        errors["name"] = err.text(lang)
    zone: str | None = None
    if raw_zone.strip():
        try:
            zone = list_settings.clean_time_zone(raw_zone[:64])
        except InputError:
            _ = gettext_for(lang)
            errors["time_zone"] = _("Please enter a time zone like Asia/Shanghai or Europe/Berlin.")
    if errors:
        return _page(
            state,
            token,
            claims,
            errors=errors,
            name_value=raw_name,
            zone_value=raw_zone,
            status=422,
        )
    wanted = set(form.getlist("list"))
    who = actor(request, "web:preferences")
    mails: list[ConfirmationMail] = []
    with state.sessions.begin() as session:
        sub = session.get(Subscriber, claims.subscriber_id)
        if sub is not None:
            sub.time_zone = zone  # the reader's own setting: not a consent change
            no_tracking = form.get("no_tracking") == "1"
            if set_opt_out(session, sub.id, no_tracking) and no_tracking:
                forget_subscriber(session, sub.id)  # and what was recorded before goes too
            mails = _apply(state, session, sub, claims, wanted, name, who)
    response = _page(
        state, token, claims, saved=True, confirm_sent=tuple(m.list_name for m in mails)
    )
    if mails:
        response.background = BackgroundTask(deliver_all, state, mails)
    return response


def _apply(
    state: WebState,
    session: Session,
    sub: Subscriber,
    claims: Claims,
    wanted: set[str],
    name: str | None,
    who: Actor,
) -> list[ConfirmationMail]:
    """Apply the form to the lists this link may touch; the confirmation mails now due."""
    if (sub.name or None) != name:
        sub.name = name
        store.record(
            session, "preferences", who, subscriber_id=sub.id, detail={"changed": ["name"]}
        )
    mails = []
    for mlist, status in _touchable(session, sub, claims):
        on = status in (Status.ACTIVE, Status.PENDING)
        if mlist.slug in wanted and not on:
            result = store.subscribe(session, sub.email, mlist, actor=who, self_service=True)
            limited = state.address_limiter.hit(sub.email, state.timestamp()) is not None
            if result.needs_confirmation and not limited:
                mails.append(confirmation_for(state, mlist, result.subscription, sub.email))
        elif mlist.slug not in wanted and on:
            store.unsubscribe(session, sub.id, mlist.id, actor=who)
    session.flush()
    return mails


# -- "mail me my preferences link" ------------------------------------------------------------

REQUEST_PATH = "/preferences"


def _request_page(
    state: WebState,
    request: Request,
    lang: str,
    *,
    email: str = "",
    errors: dict[str, str] | None = None,
    sent: bool = False,
    status: int = 200,
) -> Response:
    browser_id, new = state.csrf.ensure_browser_id(request)
    response = state.pages.response(
        "preferences_request.html",
        {
            "lang": lang,
            "action": state.settings.public_base + REQUEST_PATH + _lang_query(lang),
            "csrf_field": CSRF_FIELD,
            "csrf_token": state.csrf.issue(REQUEST_PATH, state.timestamp(), browser_id),
            "honeypot": HONEYPOT,
            "email": email[:EMAIL_MAX],
            "errors": errors or {},
            "sent": sent,
        },
        status=status,
        private=True,
    )
    if new:
        state.csrf.set_cookie(response, browser_id)
    return response


def _lang_query(lang: str) -> str:
    return "" if lang == "en" else f"?lang={lang}"


def _lang(value: str) -> str:
    """The page's language from ``?lang=`` (a list's link may carry it); English else."""
    return value if value in LANGUAGES else "en"


@router.get(REQUEST_PATH)
def preferences_request_form(request: Request, lang: str = "en") -> Response:
    """The form: one address field."""
    return _request_page(web_state(request), request, _lang(lang))


@router.post(REQUEST_PATH)
async def preferences_request_post(request: Request, lang: str = "en") -> Response:
    state = web_state(request)
    form = await read_form(request)
    retry = state.ip_limiter.hit(client_network(request), state.timestamp())
    if retry is not None:
        raise HTTPException(429, headers={"Retry-After": str(math.ceil(retry))})
    state.csrf.check(
        form.get(CSRF_FIELD), REQUEST_PATH, state.timestamp(), state.csrf.browser_id(request)
    )
    page_lang = _lang(lang)
    raw = form.get("email").strip()
    try:
        if len(raw) > EMAIL_MAX:
            raise InvalidAddressError("too long")
        address = normalize_email(raw)
    except InvalidAddressError:
        _ = gettext_for(page_lang)
        return _request_page(
            state,
            request,
            page_lang,
            email=raw,
            errors={"email": _("Please enter a valid email address, like name@example.com.")},
            status=422,
        )
    response = _request_page(state, request, page_lang, email=address, sent=True)
    bot = bool(form.get(HONEYPOT).strip())
    limited = state.address_limiter.hit(f"preferences:{address}", state.timestamp()) is not None
    if not bot and not limited:
        response.background = BackgroundTask(_mail_link, state, address)
    return response


def _mail_link(state: WebState, address: str) -> None:
    system_mail.send_preferences_link(
        state.sessions, state.settings, state.transport(), address, now=state.now()
    )
