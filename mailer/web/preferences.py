"""``/preferences/{token}``: which lists, and the name we greet the reader by.

The token (from an email's footer, or from our own pages) names the subscriber; the form
can only change that subscriber, and only the lists it may touch: those they are
subscribed to (active or pending) and the one the link was sent for. Unticking
unsubscribes. Ticking a list they are not on only *starts* a fresh double opt-in
(pending, and a confirmation mail): a link never activates anyone, nor lifts a suppression
(docs/architecture.md principle 9). Preferences links expire (``MAILER_PREFERENCES_TTL``); every
issue carries a fresh one. Each change goes through the store, which writes the consent
ledger; a name change is recorded as ``preferences``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from mailer.errors import TokenError
from mailer.render.tokens import Claims
from mailer.urls import archive_index_url, subscribe_url
from mailer.web.common import actor, all_lists, form_fields, link_problem
from mailer.web.confirm_mail import ConfirmationMail, confirmation_for, deliver_all
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.forms import FieldError, Form, clean_name, read_form
from mailer.web.state import WebState, web_state
from subscribers import store
from subscribers.models import MailingList, Subscriber, Subscription, SubscriptionStatus
from subscribers.store import Actor

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
    status: int = 200,
) -> Response:
    with state.sessions() as session:
        sub = session.get(Subscriber, claims.subscriber_id)
        if sub is None:
            return state.pages.response(
                "error.html",
                {
                    "title": "Nothing held about this address",
                    "message": "This address is no longer on any of our lists.",
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
        email, name = sub.email, sub.name or ""
        lang = home.lang if home else "en"
    return state.pages.response(
        "preferences.html",
        {
            "brand": home.name if home else "Newsletter",
            "lang": lang,
            "email": email,
            "name": name if name_value is None else name_value,
            "choices": choices,
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
    raw_name = form.get("name")
    try:
        name = clean_name(raw_name)
    except FieldError as err:
        return _page(
            state, token, claims, errors={"name": str(err)}, name_value=raw_name, status=422
        )
    wanted = set(form.getlist("list"))
    who = actor(request, "web:preferences")
    mails: list[ConfirmationMail] = []
    with state.sessions.begin() as session:
        sub = session.get(Subscriber, claims.subscriber_id)
        if sub is not None:
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
