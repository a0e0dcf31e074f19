"""GET / (issue 17): was a 404; it lists every newsletter with its subscribe and archive
links, which lead where they say (through the app, and in Chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from subscribers import store
from tests.browser import chromium, chromium_available
from tests.conftest import Database
from tests.web_support import BASE, Web, live_server, make_list


def test_front_page_lists_every_list_with_its_links(db: Database) -> None:
    web = Web(db)
    try:
        page = web.client.get("/")
        assert page.status_code == 200
        links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', page.text)
        for slug in ("brief", "other"):
            assert (f"{BASE}/subscribe/{slug}", "Subscribe") in links
            assert (f"{BASE}/archive/{slug}", "Past issues") in links
        assert "The Test Brief" in page.text and "Other Letter" in page.text
        for url, _ in links:
            if url.startswith(BASE):
                assert web.client.get(url.removeprefix(BASE)).status_code == 200, url
    finally:
        web.close()


def test_front_page_escapes_a_list_name(db: Database) -> None:
    with db.sessions.begin() as s:
        store.create_list(s, "x", name="<script>alert(1)</script>", from_address="x@example.org")
    web = Web(db)
    try:
        text = web.client.get("/").text
        assert "<script>alert(1)" not in text and "&lt;script&gt;" in text
    finally:
        web.close()


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    with chromium() as b:
        yield b


@pytest.mark.browser
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_front_page_in_chromium_leads_to_the_subscribe_form(
    db: Database, chromium_browser: Any
) -> None:
    make_list(db.sessions, "brief", name="The Test Brief")
    with live_server(lambda url: db.settings(base_url=url)) as (server, _):
        context = chromium_browser.new_context()
        try:
            page = context.new_page()
            assert page.goto(server.url + "/").status == 200
            assert "The Test Brief" in page.locator("li").first.inner_text()
            page.get_by_role("link", name="Subscribe").click()
            page.wait_for_url(re.compile(r".*/subscribe/brief$"))
            assert page.locator("input[name=email]").count() == 1
        finally:
            context.close()
