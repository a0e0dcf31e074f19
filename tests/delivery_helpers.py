"""Helpers for delivery tests and benchmarks: seed a list fast, build a campaign."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue
from mailer.render.compiler import RenderedIssue
from mailer.sending import publish
from mailer.sending.schedule import Schedule
from subscribers import store
from subscribers.models import Subscriber, Subscription, utcnow

ISSUE = Path(__file__).parent / "fixtures" / "issues" / "brief-basic.txt"


def seed_list(
    sessions: sessionmaker[Session], n: int, *, slug: str = "brief", domain: str = "example.com"
) -> tuple[int, list[str]]:
    """A list with ``n`` active readers (reader00001@domain ...), inserted in bulk."""
    with sessions.begin() as s:
        mlist = store.create_list(
            s, slug, name="The Test Brief", from_address="The Test Brief <brief@example.org>"
        )
        list_id = mlist.id
    emails = [f"reader{i:05d}@{domain}" for i in range(1, n + 1)]
    now = utcnow()
    step = 5000
    for start in range(0, n, step):
        part = emails[start : start + step]
        with sessions.begin() as s:
            conn = s.connection()
            ids = conn.execute(
                insert(Subscriber).returning(Subscriber.id),
                [
                    {
                        "email": e,
                        "name": f"Reader {e[6:11]}",
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for e in part
                ],
            ).scalars()
            conn.execute(
                insert(Subscription),
                [
                    {
                        "subscriber_id": sid,
                        "list_id": list_id,
                        "status": "active",
                        "created_at": now,
                        "confirmed_at": now,
                    }
                    for sid in ids
                ],
            )
    return list_id, emails


def make_campaign(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    slug: str = "brief",
    issue_path: Path = ISSUE,
    force: bool = False,
) -> tuple[int, int, RenderedIssue]:
    """Parse, render and enqueue the fixture issue through the editor's use cases (what
    `mailer send` calls); (campaign id, enqueued, rendered)."""
    issue = parse_issue_file(issue_path)
    with sessions() as s:
        mlist = store.get_list(s, slug)
    rendered = publish.render_for(settings, mlist, issue)
    created = publish.create(sessions, mlist, issue, rendered, Schedule(force=force))
    return created.campaign_id, created.enqueued, rendered


def bare_rendered(subject: str, html: str, text: str) -> RenderedIssue:
    """Bodies a test writes by hand (no MJML), to go with :func:`fixture_issue`."""
    return RenderedIssue(subject=subject, preheader="", html=html, text=text, archive_html=html)


def fixture_issue() -> Issue:
    """The fixture issue, for a campaign whose bodies a test writes itself."""
    return parse_issue_file(ISSUE)
