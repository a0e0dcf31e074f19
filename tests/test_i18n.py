"""The catalogs (issue 15): every string of the reader pages and system mails is in the
zh-Hans catalog, translated (no empty or fuzzy entry), with the same placeholders as the
English, and the catalog loads from its .po source."""

from __future__ import annotations

import configparser
import re
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from mailer.render import i18n
from subscribers import list_settings, store
from subscribers.list_settings import LANGUAGES, ListChanges
from tests.conftest import Database
from tests.web_support import BASE, Web, csrf_of, link_in, text_body

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s")


def _extracted() -> set[str]:
    """What `pybabel extract -F babel.cfg` finds in the code and templates right now."""
    cfg = configparser.RawConfigParser()
    cfg.read(ROOT / "babel.cfg", encoding="utf-8")
    # "[jinja2: templates/web/**.html]" -> ("templates/web/**.html", "jinja2")
    method_map = [
        (pattern.strip(), method.strip())
        for method, pattern in (section.split(":", 1) for section in cfg.sections())
    ]
    options_map: dict[str, dict[str, str]] = {pattern: {} for pattern, _ in method_map}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_catalog_complete_and_translated(lang: str) -> None:
    with i18n.catalog_path(lang).open("rb") as fh:
        catalog = read_po(fh, locale=i18n.locale_name(lang))
    entries = {m.id: m for m in catalog if m.id}
    wanted = _extracted()
    assert len(wanted) >= 10  # the extraction itself works
    assert sorted(wanted - set(entries)) == [], "strings missing from the catalog: re-extract"
    assert [m.id for m in entries.values() if not m.string] == []
    assert [m.id for m in entries.values() if m.fuzzy] == []
    for msgid, m in entries.items():
        ids = msgid if isinstance(msgid, str) else msgid[0]
        text = m.string if isinstance(m.string, str) else (m.string or ("",))[0]
        assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(ids)), ids
    assert list(catalog.check()) == []


def test_translations_load_from_the_po_source() -> None:
    _ = i18n.gettext_for("zh-Hans")
    assert _("Yes, subscribe me") == "是的，为我订阅"
    assert i18n.gettext_for("en")("Yes, subscribe me") == "Yes, subscribe me"
    # an unknown language speaks English, never fails
    assert i18n.gettext_for("xx")("Yes, subscribe me") == "Yes, subscribe me"
    assert i18n.template_context("zh-Hans")["lang"] == "zh-Hans"
    assert i18n.template_context("fr")["lang"] == "en"


def test_every_language_has_a_catalog() -> None:
    for lang in LANGUAGES:
        assert lang == "en" or i18n.catalog_path(lang).is_file(), lang


# -- the reader pages speak the list's language ---------------------------------------------


def test_reader_pages_in_the_lists_language(db: Database) -> None:
    web = Web(db)
    try:
        with db.sessions.begin() as s:
            list_settings.update_list(s, store.get_list(s, "brief"), ListChanges(lang="zh-Hans"))
        form = web.client.get("/subscribe/brief")
        assert '<html lang="zh-Hans">' in form.text
        assert "订阅《The Test Brief》" in form.text and "电子邮件地址" in form.text
        assert "Email address" not in form.text
        other = web.client.get("/subscribe/other")  # an English list stays English
        assert '<html lang="en">' in other.text and "Email address" in other.text
        bad = web.client.post(
            "/subscribe/brief", data={"csrf_token": csrf_of(form.text), "email": "nope"}
        )
        assert bad.status_code == 422 and "请输入有效的电子邮件地址" in bad.text
        done = web.subscribe("reader@example.com")
        assert "请查看您的收件箱" in done.text
        # the value inside a translated sentence is still escaped
        assert "<strong>reader@example.com</strong>" in done.text
        [mail] = web.mails()
        assert mail["Subject"] == "请确认订阅《The Test Brief》"
        link = link_in(text_body(mail), "confirm").removeprefix(BASE)
        button = web.client.get(link)
        assert '<html lang="zh-Hans">' in button.text and "确认我的订阅" in button.text
        confirmed = web.client.post(link, data={"csrf_token": csrf_of(button.text)})
        assert "您已订阅" in confirmed.text
    finally:
        web.close()


def test_hostile_list_name_stays_text_in_a_translated_sentence(db: Database) -> None:
    web = Web(db)
    try:
        with db.sessions.begin() as s:
            list_settings.update_list(
                s,
                store.get_list(s, "brief"),
                ListChanges(lang="zh-Hans", name="<img src=x onerror=alert(1)>"),
            )
        done = web.subscribe("reader@example.com")
        assert "<img" not in done.text and "&lt;img src=x onerror=alert(1)&gt;" in done.text
    finally:
        web.close()


def test_link_problems_and_field_errors_in_the_lists_language(db: Database) -> None:
    web = Web(db)
    try:
        with db.sessions.begin() as s:
            list_settings.update_list(s, store.get_list(s, "brief"), ListChanges(lang="zh-Hans"))
        old = web.signer.preferences_token(1, web.brief_id, now=web.clock.now - timedelta(days=400))
        expired = web.client.get(f"/preferences/{old}")
        assert expired.status_code == 410 and '<html lang="zh-Hans">' in expired.text
        days = round(web.settings.preferences_ttl / 86400)
        assert "此订阅偏好链接已过期" in expired.text and f"有效期为 {days} 天" in expired.text
        assert f'href="{BASE}/preferences?lang=zh-Hans"' in expired.text  # a new one by mail
        form = web.client.get("/subscribe/brief")
        long_name = web.client.post(
            "/subscribe/brief",
            data={"csrf_token": csrf_of(form.text), "email": "a@example.com", "name": "n" * 300},
        )
        assert long_name.status_code == 422 and "姓名最多可使用 200 个字符" in long_name.text
    finally:
        web.close()


def test_archive_index_in_the_lists_language(db: Database) -> None:
    web = Web(db)
    try:
        with db.sessions.begin() as s:
            list_settings.update_list(s, store.get_list(s, "brief"), ListChanges(lang="zh-Hans"))
        page = web.client.get("/archive/brief")
        assert '<html lang="zh-Hans">' in page.text and "《The Test Brief》往期内容" in page.text
        assert '<html lang="en">' in web.client.get("/archive/other").text
    finally:
        web.close()


def test_an_erased_readers_preferences_link_in_the_lists_language(db: Database) -> None:
    web = Web(db)
    try:
        with db.sessions.begin() as s:
            mlist = store.get_list(s, "brief")
            list_settings.update_list(s, mlist, ListChanges(lang="zh-Hans"))
            sid = store.subscribe(s, "gone@example.com", mlist, confirmed=True).subscriber.id
        token = web.signer.preferences_token(sid, web.brief_id, now=web.clock.now)
        with db.sessions.begin() as s:
            store.erase(s, "gone@example.com")
        page = web.client.get(f"/preferences/{token}")
        assert page.status_code == 404 and '<html lang="zh-Hans">' in page.text
        assert "此地址已不在我们的任何名单中。" in page.text and "错误 404。" in page.text
    finally:
        web.close()
