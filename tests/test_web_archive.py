"""The archive, its web editions and Atom feed, from campaigns really sent through the send
engine and the outbox (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from mailer.sending.models import Campaign
from mailer.urls import archive_url
from subscribers import store
from tests.conftest import Database
from tests.web_support import BASE, Web, add_active, html_body, read_eml, sample_issue, send_issue

A = "{http://www.w3.org/2005/Atom}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$")


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db)
    add_active(db.sessions, "reader@example.com")
    yield w
    w.close()


def _sent(web: Web, n: int, *, start: bool = True) -> tuple[int, str]:
    issue = sample_issue(n)
    cid = send_issue(web.db.sessions, web.settings, issue, start=start)
    return cid, issue.key()


def test_archive_lists_sent_issues_newest_first_and_hides_unsent(web: Web) -> None:
    _, key1 = _sent(web, 1)
    _, key2 = _sent(web, 2)
    _, key3 = _sent(web, 3, start=False)  # created, never started
    r = web.client.get("/archive/brief")
    assert r.status_code == 200
    hrefs = re.findall(r'class="issue-link" href="([^"]+)"', r.text)
    assert hrefs == [archive_url(web.settings, "brief", k) for k in (key2, key1)]
    assert "Test issue 3" not in r.text
    assert "Preheader of issue 2" in r.text
    feed = f"{BASE}/archive/brief/feed.xml"
    assert (
        f'<link rel="alternate" type="application/atom+xml" title="The Test Brief" href="{feed}">'
        in r.text
    )
    assert web.client.get(f"/archive/brief/{key3[:16]}").status_code == 404


def test_the_view_in_browser_link_of_a_sent_mail_opens_the_web_edition(web: Web) -> None:
    cid, key = _sent(web, 1)
    [eml] = sorted((web.settings.outbox_dir / str(cid)).glob("*.eml"))
    mail_html = html_body(read_eml(eml))
    view = archive_url(web.settings, "brief", key)
    assert f'href="{view}"' in mail_html
    page = web.client.get(view.removeprefix(BASE))
    assert page.status_code == 200
    assert "Test issue 1: harbour reopens" in page.text
    assert "Story 1 &lt;with markup&gt;" in page.text
    # nobody's personal links, no placeholders left over
    assert "/unsubscribe/" not in page.text and "/preferences/" not in page.text
    assert "%%" not in page.text
    assert f"{BASE}/subscribe/brief" in page.text
    csp = page.headers["content-security-policy"]
    assert "script" not in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "<script" not in page.text.lower()


def test_without_a_stored_web_edition_the_placeholders_get_public_values(web: Web) -> None:
    cid, key = _sent(web, 1)
    with web.db.sessions.begin() as s:
        s.execute(update(Campaign).where(Campaign.id == cid).values(archive_html=""))
    page = web.client.get(f"/archive/brief/{key[:16]}")
    assert page.status_code == 200
    assert "%%" not in page.text
    assert "/unsubscribe/" not in page.text and "/preferences/" not in page.text
    assert page.text.count(f'href="{BASE}/subscribe/brief"') >= 2  # unsubscribe + preferences


@pytest.mark.parametrize(
    "path",
    [
        "/archive/brief/0123456789abcdef",  # no such issue
        "/archive/brief/XYZ",
        "/archive/brief/0123456789ABCDEF",
        "/archive/brief/0123456789abcdef0",
        "/archive/nope",
        "/archive/nope/feed.xml",
        "/archive/Bad_Slug!",
    ],
)
def test_archive_404s_are_pages(web: Web, path: str) -> None:
    r = web.client.get(path)
    assert r.status_code == 404
    assert "Page not found" in r.text
    assert "Traceback" not in r.text


def test_the_same_issue_sent_twice_appears_once(web: Web) -> None:
    issue = sample_issue(1)
    send_issue(web.db.sessions, web.settings, issue)
    with web.db.sessions.begin() as s:
        # a forced resend: same issue key, a second campaign
        mlist = store.get_list(s, "brief")
        first = s.query(Campaign).one()
        s.add(
            Campaign(
                list_id=mlist.id,
                issue_key=first.issue_key,
                generation=first.generation + 1,  # what `send --force` takes
                subject=first.subject,
                issue=first.issue,
                html=first.html,
                text=first.text,
                archive_html=first.archive_html,
                status="done",
                started_at=datetime.now(first.started_at.tzinfo),
                reclaimed=0,
            )
        )
    r = web.client.get("/archive/brief")
    assert r.text.count('class="issue-link"') == 1


def _one(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.findall(A + tag)
    assert len(found) == 1, f"{parent.tag} needs exactly one {tag}, has {len(found)}"
    return found[0]


def check_atom(doc: bytes) -> ET.Element:
    """RFC 4287's MUSTs for what we emit (feed and entry metadata, dates, links)."""
    assert doc.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(doc)
    assert root.tag == A + "feed"
    for el in (root, *root.findall(A + "entry")):
        assert re.match(r"^https?://", _one(el, "id").text or "")
        assert (_one(el, "title").text or "").strip()
        assert RFC3339.match(_one(el, "updated").text or "")
        alternates = [ln for ln in el.findall(A + "link") if ln.get("rel") == "alternate"]
        assert len(alternates) == 1
    assert root.findall(A + "author"), "feed-level author (entries have none)"
    assert [ln.get("href") for ln in root.findall(A + "link") if ln.get("rel") == "self"]
    for entry in root.findall(A + "entry"):
        content = entry.find(A + "content")
        if content is not None:
            assert content.get("type") == "html"
    return root


def test_atom_feed_is_valid_and_newest_first(web: Web) -> None:
    _, key1 = _sent(web, 1)
    _, key2 = _sent(web, 2)
    _sent(web, 3, start=False)
    r = web.client.get("/archive/brief/feed.xml")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/atom+xml")
    root = check_atom(r.content)
    entries = root.findall(A + "entry")
    assert [e.find(A + "id").text for e in entries] == [  # type: ignore[union-attr]
        archive_url(web.settings, "brief", k) for k in (key2, key1)
    ]
    first = entries[0]
    assert first.find(A + "title").text == "Test issue 2: harbour reopens"  # type: ignore[union-attr]
    assert first.find(A + "summary").text == "Preheader of issue 2"  # type: ignore[union-attr]
    content = first.find(A + "content").text or ""  # type: ignore[union-attr]
    # HTML inside the feed is escaped once by the XML writer and once as HTML text
    assert "Story 2 &lt;with markup&gt;" in content
    assert 'href="https://news.example.net/story/2"' in content
    self_link = next(ln for ln in root.findall(A + "link") if ln.get("rel") == "self")
    assert self_link.get("href") == f"{BASE}/archive/brief/feed.xml"


def test_empty_feed_is_still_valid(web: Web) -> None:
    r = web.client.get("/archive/other/feed.xml")
    root = check_atom(r.content)
    assert root.findall(A + "entry") == []


def test_archive_pages_paginate(web: Web) -> None:
    from mailer.web import archive

    with web.db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        base = datetime.now().astimezone()
        for n in range(archive.PAGE_SIZE + 3):
            issue = sample_issue(1 + n % 28)
            s.add(
                Campaign(
                    list_id=mlist.id,
                    issue_key=f"{n:016x}" + "0" * 48,
                    subject=f"Issue {n:03d}",
                    issue=issue.to_dict(),
                    html="<p>x</p>",
                    text="x",
                    archive_html="",
                    status="done",
                    started_at=base - timedelta(hours=n),
                    reclaimed=0,
                )
            )
    first = web.client.get("/archive/brief")
    assert first.text.count('class="issue-link"') == archive.PAGE_SIZE
    assert "Issue 000" in first.text and f"Issue {archive.PAGE_SIZE:03d}" not in first.text
    assert f"{BASE}/archive/brief?page=2" in first.text
    second = web.client.get("/archive/brief?page=2")
    assert second.text.count('class="issue-link"') == 3
    assert f'href="{BASE}/archive/brief"' in second.text  # newer issues
    assert web.client.get("/archive/brief?page=abc").status_code == 400
