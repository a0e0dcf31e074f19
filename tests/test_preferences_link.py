"""'Mail me my preferences link' (issue 15): the same answer for every address, a mail only
to a reader on a list, through the ledger, within the limits; forged, flooded and bot posts
get nothing. On SQLite and PostgreSQL, through the app."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from mailer.sending.models import Delivery
from subscribers import list_settings, store
from subscribers.list_settings import ListChanges
from tests.conftest import Database
from tests.web_support import BASE, AppClient, Web, csrf_of, link_in, text_body


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db, subscribe_address_limit=10, subscribe_ip_limit=50)
    with db.sessions.begin() as s:
        brief = store.get_list(s, "brief")
        store.subscribe(s, "known@example.com", brief, confirmed=True)
        store.subscribe(s, "gone@example.com", brief, confirmed=True)
        gone = store.get_subscriber(s, "gone@example.com")
        store.unsubscribe(s, gone.id, None, actor=store.CLI)
    yield w
    w.close()


def _ask(web: Web, address: str, client: AppClient | None = None, **extra: str) -> str:
    c = client or web.client
    page = c.get("/preferences")
    assert page.status_code == 200
    r = c.post("/preferences", data={"csrf_token": csrf_of(page.text), "email": address, **extra})
    assert r.status_code == 200, r.text
    return r.text


def _kinds(web: Web) -> list[str]:
    with web.db.sessions() as s:
        return [d.kind for d in s.scalars(select(Delivery).order_by(Delivery.id))]


def test_same_answer_for_every_address_and_a_link_only_to_readers(web: Web) -> None:
    form = web.client.get("/subscribe/brief")
    assert f'href="{BASE}/preferences"' in form.text  # found from the subscribe form
    pages = {a: _ask(web, a) for a in ("known@example.com", "nobody@example.com")}
    pages["gone@example.com"] = _ask(web, "gone@example.com")

    def blind(html: str) -> str:  # the address it echoes and the form token aside
        return re.sub(r"[a-z]+@example\.com", "ADDRESS", html)

    assert len({blind(p) for p in pages.values()}) == 1
    assert "we have sent it an email with a link to your preferences" in pages["nobody@example.com"]
    [mail] = web.mails()
    assert mail["To"] == "known@example.com"
    assert mail["Subject"] == "Your preferences for The Test Brief"
    link = link_in(text_body(mail), "preferences").removeprefix(BASE)
    opened = web.client.get(link)
    assert opened.status_code == 200 and "Save preferences" in opened.text
    assert _kinds(web) == ["preferences"]


def test_flood_and_bots_get_nothing_more(web: Web) -> None:
    for _ in range(6):
        _ask(web, "known@example.com")
    assert len(web.mails()) == 3  # the ledger's 3 a day per address
    _ask(web, "known@example.com", website="http://spam.example")
    assert len(web.mails()) == 3


def test_bad_address_forged_form_and_ip_flood(web: Web) -> None:
    page = web.client.get("/preferences")
    bad = web.client.post(
        "/preferences", data={"csrf_token": csrf_of(page.text), "email": "not-an-address"}
    )
    assert bad.status_code == 422 and "valid email address" in bad.text
    forged = web.client.post("/preferences", data={"csrf_token": "x", "email": "known@example.com"})
    assert forged.status_code in (400, 403)
    assert web.mails() == []
    stranger = web.new_client(ip="198.51.100.7")
    codes = []
    for _ in range(60):
        codes.append(
            stranger.post(
                "/preferences", data={"csrf_token": "x", "email": "known@example.com"}
            ).status_code
        )
    assert 429 in codes
    assert web.mails() == []


def test_in_the_readers_language(web: Web) -> None:
    with web.db.sessions.begin() as s:
        list_settings.update_list(s, store.get_list(s, "brief"), ListChanges(lang="zh-Hans"))
    page = web.client.get("/preferences?lang=zh-Hans")
    assert '<html lang="zh-Hans">' in page.text and "电子邮件地址" in page.text
    r = web.client.post(
        "/preferences?lang=zh-Hans",
        data={"csrf_token": csrf_of(page.text), "email": "known@example.com"},
    )
    assert r.status_code == 200 and "<strong>known@example.com</strong>" in r.text
    [mail] = web.mails()
    assert mail["Subject"] == "《The Test Brief》的订阅偏好"
