"""Small pieces the reader routers share: who is acting, lists by slug, bad-link pages,
the fields of a token page's form."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from mailer.errors import NotFoundError, TokenError
from mailer.render.i18n import N_, gettext_for
from mailer.render.tokens import Purpose
from mailer.urls import subscribe_url
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.state import WebState, client_ip
from subscribers.models import MailingList
from subscribers.store import SLUG, Actor


def actor(request: Request, source: str) -> Actor:
    """The consent ledger's view of this request: source, IP, user agent."""
    return Actor(source, client_ip(request), request.headers.get("user-agent"))


def client_network(request: Request) -> str:
    """Who the per-IP subscribe limit counts: an IPv4 address, or the /64 an IPv6 address is
    in. One host is handed a whole /64 and may send from any address in it, so counting
    single IPv6 addresses would let it ask for as many confirmation mails as it likes."""
    host = client_ip(request)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # a dual-stack socket's view of an IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def form_fields(state: WebState, path: str) -> dict[str, str]:
    """What a token page's form posts back with: its own public URL as the action and a
    CSRF token bound to that path (the POST checks it against the same path), so the
    confirm, unsubscribe and preferences pages share one rule."""
    return {
        "action": state.settings.public_base + path,
        "csrf_field": CSRF_FIELD,
        "csrf_token": state.csrf.issue(path, state.timestamp()),
    }


def list_by_slug(session: Session, slug: str) -> MailingList:
    """The list, or NotFoundError (404) without naming the other lists."""
    if not SLUG.match(slug):
        raise NotFoundError("no such list")
    mlist = session.scalar(select(MailingList).where(MailingList.slug == slug))
    if mlist is None:
        raise NotFoundError("no such list")
    return mlist


def all_lists(session: Session) -> list[MailingList]:
    return list(session.scalars(select(MailingList).order_by(MailingList.name)))


_PROBLEMS: dict[str, tuple[str, str]] = {
    "confirm": (
        N_("This confirmation link has expired"),
        N_(
            "Confirmation links work for a limited time. Ask for a new one below: it only "
            "takes your email address."
        ),
    ),
    "unsubscribe": (
        N_("This unsubscribe link has expired"),
        N_("Use the unsubscribe link in a more recent email from us."),
    ),
    "preferences": (
        N_("This preferences link has expired"),
        N_(
            "Preferences links work for %(days)s days. Use the preferences link in a more "
            "recent email from us (every issue carries a fresh one). To stop our emails, "
            "the unsubscribe link in any of them always works."
        ),
    ),
}


def link_problem(
    state: WebState, request: Request, token: str, purpose: Purpose, err: TokenError
) -> Response:
    """A clear page for an expired, forged or mangled link, with a way forward; never a 500."""
    list_id = state.signer.list_hint(token, purpose)
    expired = "expired" in str(err) and list_id is not None
    with state.sessions() as session:
        lists = all_lists(session)
        hinted = session.get(MailingList, list_id) if list_id is not None else None
    lang = hinted.lang if hinted is not None else "en"  # the page speaks the list's language
    _ = gettext_for(lang)
    if expired:
        title, message = (_(text) for text in _PROBLEMS[purpose])
        days = max(1, round(state.settings.preferences_ttl / 86400))
        message = message % {"days": days} if purpose == "preferences" else message
        status = 410
    else:
        title = _("This link is not valid")
        message = _(
            "The link may have been cut short or changed when it was copied. Open it again "
            "from the email, or copy the whole address."
        )
        status = 400
    offers = [hinted] if hinted is not None else lists
    return state.pages.response(
        "link_problem.html",
        {
            "lang": lang,
            "title": title,
            "message": message,
            "brand": hinted.name if hinted is not None else "Newsletter",
            "offers": [(m.name, subscribe_url(state.settings, m.slug)) for m in offers],
            "ask_again": purpose == "confirm",
            # an expired preferences link: a fresh one by mail (/preferences)
            "preferences_request_url": (
                state.settings.public_base
                + "/preferences"
                + ("" if lang == "en" else f"?lang={lang}")
            )
            if purpose == "preferences"
            else "",
        },
        status=status,
        private=True,
    )
