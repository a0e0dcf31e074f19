"""``/archive``: the sent issues of each list, their web editions, and an Atom feed.

Only campaigns that started sending appear (``started_at`` set): a scheduled or cancelled
issue was never public. An issue is addressed by the first 16 hex characters of its
``issue_key`` (see :func:`mailer.urls.archive_url`), which is what the email's "view
in browser" link points to. The web edition is ``Campaign.archive_html`` when the renderer
stored one; otherwise the email HTML with its placeholders filled with values that belong
to nobody (unsubscribe and preferences -> the list's subscribe page, name -> empty).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from mailer.config import Settings
from mailer.errors import InputError, NotFoundError
from mailer.issue.model import Issue
from mailer.render.compiler import RenderedIssue, date_label
from mailer.sending.models import Campaign
from mailer.urls import (
    ARCHIVE_KEY_LEN,
    archive_index_url,
    archive_url,
    feed_url,
    subscribe_url,
)
from mailer.web.common import all_lists, list_by_slug
from mailer.web.feed import FeedEntry, FeedInfo, atom_feed
from mailer.web.security import ARCHIVE_CSP
from mailer.web.state import web_state
from subscribers.models import MailingList

router = APIRouter()

PAGE_SIZE = 50
FEED_SIZE = 20
_KEY = re.compile(rf"^[0-9a-f]{{{ARCHIVE_KEY_LEN}}}$")
_SUMMARY_CUT = 300


@dataclass(frozen=True)
class Entry:
    key: str
    url: str
    subject: str
    preheader: str
    date_label: str
    sent_at: datetime
    updated_at: datetime
    issue: Issue | None


def _sent(list_id: int) -> Select[Any]:
    return (
        select(
            Campaign.issue_key,
            Campaign.subject,
            Campaign.issue,
            Campaign.started_at,
            Campaign.finished_at,
        )
        .where(Campaign.list_id == list_id, Campaign.started_at.is_not(None))
        .order_by(Campaign.started_at.desc(), Campaign.id.desc())
    )


def _entries(
    session: Session, settings: Settings, mlist: MailingList, *, limit: int, offset: int = 0
) -> Iterator[Entry]:
    seen: set[str] = set()
    for key, subject, snapshot, started, finished in session.execute(
        _sent(mlist.id).limit(limit).offset(offset)
    ):
        short = key[:ARCHIVE_KEY_LEN]
        if short in seen or not _KEY.match(short):
            continue  # the same issue sent twice to a list: show the latest once
        seen.add(short)
        try:
            issue: Issue | None = Issue.from_dict(snapshot)
        except (InputError, TypeError, ValueError, KeyError):
            issue = None
        day = issue.date if issue is not None and issue.date else started.date()
        yield Entry(
            key=short,
            url=archive_url(settings, mlist.slug, key),
            subject=subject,
            preheader=issue.preheader if issue else "",
            date_label=date_label(day, mlist.lang),
            sent_at=started,
            updated_at=finished or started,
            issue=issue,
        )


@router.get("/")
def home(request: Request) -> Response:
    """The front page: every list with its subscribe and archive links (was a 404)."""
    state = web_state(request)
    with state.sessions() as session:
        rows = [
            (
                m.name,
                subscribe_url(state.settings, m.slug),
                archive_index_url(state.settings, m.slug),
            )
            for m in all_lists(session)
        ]
    return state.pages.response("home.html", {"title": "Newsletters", "lists": rows})


@router.get("/archive")
def archive_lists(request: Request) -> Response:
    state = web_state(request)
    with state.sessions() as session:
        lists = all_lists(session)
        rows = [(m.name, archive_index_url(state.settings, m.slug), "Past issues") for m in lists]
    return state.pages.response("lists.html", {"title": "Archives", "lists": rows})


@router.get("/archive/{slug}")
def archive_index(request: Request, slug: str, page: int = 1) -> Response:
    state = web_state(request)
    page = max(1, min(page, 10_000))
    with state.sessions() as session:
        mlist = list_by_slug(session, slug)
        entries = list(
            _entries(
                session, state.settings, mlist, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
            )
        )
        name, list_slug, lang = mlist.name, mlist.slug, mlist.lang
    base = archive_index_url(state.settings, list_slug)
    return state.pages.response(
        "archive_index.html",
        {
            "brand": name,
            "lang": lang,
            "list_name": name,
            "entries": entries[:PAGE_SIZE],
            "page": page,
            "newer_url": (f"{base}?page={page - 1}" if page > 2 else base) if page > 1 else None,
            "older_url": f"{base}?page={page + 1}" if len(entries) > PAGE_SIZE else None,
            "feed_url": feed_url(state.settings, list_slug),
            "subscribe_url": subscribe_url(state.settings, list_slug),
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/archive/{slug}/feed.xml")
def archive_feed(request: Request, slug: str) -> Response:
    state = web_state(request)
    with state.sessions() as session:
        mlist = list_by_slug(session, slug)
        entries = list(_entries(session, state.settings, mlist, limit=FEED_SIZE))
        info = FeedInfo(
            title=mlist.name,
            feed_url=feed_url(state.settings, mlist.slug),
            index_url=archive_index_url(state.settings, mlist.slug),
            author=mlist.name,
            updated=mlist.created_at,
            subtitle=f"Past issues of {mlist.name}",
        )
    feed_entries = [
        FeedEntry(
            url=e.url,
            title=e.subject,
            published=e.sent_at,
            updated=e.updated_at,
            summary=_summary(e),
            content_html=_content(e),
        )
        for e in entries
    ]
    return Response(
        atom_feed(info, feed_entries),
        media_type="application/atom+xml",
        headers={"Cache-Control": "public, max-age=300"},
    )


def _summary(e: Entry) -> str:
    if e.preheader:
        return e.preheader
    if e.issue and e.issue.intro:
        text = e.issue.intro[0]
        return text if len(text) <= _SUMMARY_CUT else text[: _SUMMARY_CUT - 1] + "…"
    return ""


def _content(e: Entry) -> str:
    """A compact HTML body for feed readers: intro, then each item linked."""
    if e.issue is None:
        return ""
    esc = html.escape
    parts = [f"<p>{esc(p)}</p>" for p in e.issue.intro]
    parts.append("<ul>")
    for item in e.issue.items:
        parts.append(
            f'<li><a href="{esc(item.url)}">{esc(item.title)}</a> ({esc(item.source)})'
            f"<p>{esc(item.paragraphs[0])}</p></li>"
        )
    parts.append("</ul>")
    parts.append(f'<p><a href="{esc(e.url)}">Read the whole issue</a></p>')
    return "".join(parts)


@router.get("/archive/{slug}/{key}")
def archive_issue(request: Request, slug: str, key: str) -> Response:
    state = web_state(request)
    if not _KEY.match(key):
        raise NotFoundError("no such issue")
    with state.sessions() as session:
        mlist = list_by_slug(session, slug)
        campaign = session.scalar(
            select(Campaign)
            .where(
                Campaign.list_id == mlist.id,
                Campaign.started_at.is_not(None),
                Campaign.issue_key.startswith(key, autoescape=True),
            )
            .order_by(Campaign.started_at.desc(), Campaign.id.desc())
            .limit(1)
        )
        if campaign is None:
            raise NotFoundError("no such issue")
        page = web_edition(campaign, state.settings, mlist.slug)
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": ARCHIVE_CSP,
            "Cache-Control": "public, max-age=300",
        },
    )


def web_edition(campaign: Campaign, settings: Settings, list_slug: str) -> str:
    """The issue as a page, with no reader's personal links in it."""
    if campaign.archive_html:
        return campaign.archive_html
    public = subscribe_url(settings, list_slug)
    rendered = RenderedIssue(subject=campaign.subject, preheader="", html=campaign.html, text="")
    page, _ = rendered.personalize(
        {"unsubscribe_url": public, "preferences_url": public, "name": ""}
    )
    return page
