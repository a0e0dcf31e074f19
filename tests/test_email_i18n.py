"""The issue email speaks its list's language (issue 15): every fixed word of the issue
templates and the default footer sentence is translated in the HTML, the text part and the
web edition; no English fixed word is left in a zh-Hans email; ``<html lang>`` and the issue
date follow the list. Compiled once per list: the reader's fields only fill placeholders."""

from __future__ import annotations

import html as html_module
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from lxml import html as lxml_html

from mailer.config import Settings
from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue
from mailer.render import i18n
from mailer.render.compiler import Branding, RenderedIssue, render_issue
from mailer.render.list_brand import greeting_for
from mailer.render.message import MessageTemplate
from mailer.render.subject import choose_subject
from mailer.render.tokens import Signer
from mailer.sending import publish
from mailer.sending.personalize import reader_message
from subscribers import store
from subscribers.list_settings import ListChanges, update_list
from subscribers.models import MailingList
from tests.conftest import TEST_SECRET_KEY, Database
from tests.web_support import Web, sample_issue, send_issue

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "tests" / "fixtures" / "issues" / "brief-full.txt"
ISSUE_TEMPLATES = [ROOT / "templates" / "email" / n for n in ("issue.mjml.j2", "issue.txt.j2")]
REASON = "You are receiving %(newsletter)s because you subscribed to it at %(host)s."
BASE = "https://north.example"
VALUES = {
    "unsubscribe_url": f"{BASE}/unsubscribe/tok",
    "preferences_url": f"{BASE}/preferences/tok",
    "name": "Ana",
}
# a %(name)s placeholder or an HTML tag: what is not a fixed word of a message
_HOLES = re.compile(r"%\([a-z_]+\)s|<[^>]+>")


def issue_msgids() -> list[str]:
    """Every string the issue templates mark for translation (as pybabel extracts them)."""
    ids = [REASON]
    for path in ISSUE_TEMPLATES:
        ids += [str(m[1]) for m in extract_from_file("jinja2", str(path))]
    return ids


def fragments(message: str) -> list[str]:
    """The fixed words of a message: its text between placeholders and tags."""
    parts = (p.strip(" :：") for p in _HOLES.split(message))
    return [p for p in parts if p]


def branding(lang: str) -> Branding:
    mlist = MailingList(slug="north", name="The North Brief", lang=lang)
    return Branding(
        "The North Brief",
        BASE,
        "1 Quay Road\nBristol",
        lang=i18n.supported(mlist.lang),
        greeting=greeting_for(mlist),
        archive_url=f"{BASE}/archive/north/0123456789abcdef",
        subscribe_url=f"{BASE}/subscribe/north",
    )


def shown(markup: str) -> str:
    doc = lxml_html.document_fromstring(markup)
    for node in doc.xpath("//style|//title|//div[@class='preheader']"):
        node.drop_tree()
    return " ".join(doc.text_content().split())


@pytest.fixture(scope="module")
def issue() -> Issue:
    return parse_issue_file(FULL)


@pytest.fixture(scope="module")
def rendered(issue: Issue) -> dict[str, RenderedIssue]:
    return {lang: render_issue(issue, branding(lang)) for lang in ("en", "zh-Hans")}


def content_text(issue: Issue) -> str:
    """The issue's own words (English here), which may well contain a fixed word."""
    words = [issue.subject, *issue.intro, *issue.closing]
    for item in issue.items:
        words += [item.title, item.source, *item.paragraphs]
    return " ".join(" ".join(words).split())


def test_the_issue_templates_mark_their_fixed_words() -> None:
    ids = issue_msgids()
    for word in ("View in browser", "In today’s brief", "Unsubscribe", "Manage preferences"):
        assert word in ids
    assert "Read more at %(source)s:" in ids and "Source: %(source)s" in ids


def test_english_list_gets_the_english_words(rendered: dict[str, RenderedIssue]) -> None:
    r = rendered["en"]
    html, text = r.personalize(VALUES)
    assert '<html lang="en"' in html
    page = shown(html)
    assert "Monday" not in page and "Tuesday, February 4, 2025" in page
    assert "In today’s brief" in page and "View in browser" in page
    assert "Forwarded this email? Subscribe to The North Brief to get it yourself." in page
    assert "You are receiving The North Brief because you subscribed to it at" in page
    assert "In today's brief:" in text and "Unsubscribe:\n" in text
    assert "Hello Ana," in page and "Hello Ana," in text


def test_zh_hans_list_gets_every_fixed_word_translated(
    issue: Issue, rendered: dict[str, RenderedIssue]
) -> None:
    r = rendered["zh-Hans"]
    html, text = r.personalize(VALUES)
    assert '<html lang="zh-Hans"' in html
    page = shown(html)
    web = shown(r.for_archive())
    flat_text = " ".join(text.split())
    _ = i18n.gettext_for("zh-Hans")
    content = content_text(issue)
    for msgid in issue_msgids():
        translated = _(msgid)
        assert translated != msgid, f"not translated: {msgid!r}"
        # what the reader sees of it: the translation's own words, in HTML or text
        for word in fragments(translated):
            assert word in page or word in flat_text or word in web, (msgid, word)
        for word in fragments(msgid):
            if word in content:
                continue  # the English content says it itself
            assert word not in page, f"English fixed word in the zh-Hans HTML: {word!r}"
            assert word not in flat_text, f"English fixed word in the zh-Hans text: {word!r}"
            assert word not in web, f"English fixed word in the zh-Hans web edition: {word!r}"
    # the sentences put together, with their values, in both parts
    assert "2025年2月4日星期二" in page and "2025年2月4日星期二" in text
    assert "今日要闻" in page and "今日要闻：\n1. " in text
    assert "这封邮件是别人转发给您的？订阅《The North Brief》，即可直接收到。" in page
    assert "您收到《The North Brief》，是因为您在 north.example 订阅了它。" in page
    assert f"退订：\n{VALUES['unsubscribe_url']}" in text
    assert f"来源：{issue.items[0].source}" in text
    assert f"在 {issue.items[0].source} 阅读全文" in page
    assert "Ana，您好：" in page and "\nAna，您好：\n" in text  # the language's own line
    assert "Hello" not in page and "Hello" not in text
    assert "您正在阅读《The North Brief》的网页版。" in web


def test_zh_hans_links_keep_their_targets(rendered: dict[str, RenderedIssue]) -> None:
    html, _ = rendered["zh-Hans"].personalize(VALUES)
    doc = lxml_html.document_fromstring(html)
    [forward] = doc.xpath("//p[@class='footer-forward']/a")
    assert forward.get("href") == f"{BASE}/subscribe/north"
    assert forward.text_content() == "订阅《The North Brief》"
    hrefs = {a.text_content(): a.get("href") for a in doc.xpath("//a[@class='footer-link']")}
    assert hrefs["退订"] == VALUES["unsubscribe_url"]
    assert hrefs["管理订阅偏好"] == VALUES["preferences_url"]
    assert doc.xpath("//a[@class='topbar-link']")[0].text_content() == "在浏览器中查看"


def test_a_hostile_name_in_a_translated_link_sentence_stays_text(issue: Issue) -> None:
    b = Branding(
        '<img src=x onerror=alert(1)> "Brief"',
        BASE,
        "1 Quay Road",
        lang="zh-Hans",
        subscribe_url=f"{BASE}/subscribe/x?a=1&b=2",
    )
    html, _ = render_issue(issue, b).personalize(VALUES)
    doc = lxml_html.document_fromstring(html)
    assert doc.xpath("//img[@src='x']") == []
    [forward] = doc.xpath("//p[@class='footer-forward']/a")
    assert forward.get("href") == f"{BASE}/subscribe/x?a=1&b=2"
    assert forward.text_content() == '订阅《<img src=x onerror=alert(1)> "Brief"》'


def test_translation_is_compiled_in_not_done_per_reader(rendered: dict[str, RenderedIssue]) -> None:
    """The rendered bodies already hold the translated words around the placeholders, so
    personalizing is the same join for every language."""
    r = rendered["zh-Hans"]
    assert "今日要闻" in html_module.unescape(r.html) and "%%unsubscribe_url%%" in r.html
    assert "退订：\n%%unsubscribe_url%%" in r.text
    assert r.personalize(VALUES) == r.personalize(dict(VALUES))


def test_the_engines_message_greets_in_the_lists_language(
    rendered: dict[str, RenderedIssue],
) -> None:
    """The send engine builds each reader's line from the list's greeting (greeting_for):
    the language's word order and punctuation, and nothing for a reader without a name."""
    signer = Signer(TEST_SECRET_KEY)
    for lang, line in (("en", "Hello Ana,"), ("zh-Hans", "Ana，您好：")):
        r = rendered[lang]
        template = MessageTemplate.build(
            campaign_id=1,
            subject=r.subject,
            from_address="North <news@north.example>",
            html=r.html,
            text=r.text,
            list_name="The North Brief",
            list_slug="north",
            greeting=greeting_for(MailingList(slug="north", name="N", lang=lang)),
        )
        for name, want in (("Ana", line), ("", "")):
            msg = reader_message(
                template,
                signer,
                BASE,
                list_id=1,
                subscriber_id=1,
                delivery_id=1,
                email="ana@example.com",
                name=name,
            )
            assert msg.fields["greeting"] == want


def test_the_subject_templates_date_is_in_the_lists_language(issue: Issue) -> None:
    template = "{newsletter} · {date}"
    assert choose_subject(issue, "N", template=template) == "N · February 4, 2025"
    assert choose_subject(issue, "N", template=template, lang="zh-Hans") == "N · 2025年2月4日"
    settings = Settings(base_url=BASE)
    zh = MailingList(id=1, slug="north", name="N", from_address="n@north.example", lang="zh-Hans")
    zh.subject_template = template
    assert publish.render_for(settings, zh, issue).subject == "N · 2025年2月4日"


def test_the_archive_index_dates_issues_in_the_lists_language(db: Database) -> None:
    web = Web(db)
    try:
        with db.sessions.begin() as s:
            update_list(s, store.get_list(s, "brief"), ListChanges(lang="zh-Hans"))
        send_issue(db.sessions, web.settings, sample_issue(1))
        send_issue(db.sessions, web.settings, sample_issue(2), "other")
        zh = web.client.get("/archive/brief").text
        assert "2025年3月1日星期六" in zh and "March" not in zh
        assert "Sunday, March 2, 2025" in web.client.get("/archive/other").text
    finally:
        web.close()


@pytest.mark.parametrize(
    ("paragraph", "kept"),
    [
        (
            "今天的简报到此结束。回复此邮件告诉我们您的想法。明天见！",
            "今天的简报到此结束。明天见！",
        ),
        ("如果这封邮件是朋友转发给您的，请订阅。感谢阅读。", "感谢阅读。"),
        ("您收到此邮件是因为您订阅了简报。", None),
        ("价格上涨了3.5%。市场平稳。", "价格上涨了3.5%。市场平稳。"),
        ("Prices rose 3.5% in Q3. Reply to our newsletter! Fine.", "Prices rose 3.5% in Q3. Fine."),
    ],
)
def test_the_web_edition_drops_mail_only_sentences_in_chinese_too(
    paragraph: str, kept: str | None
) -> None:
    """The web edition leaves out what speaks to a mailbox in both shipped languages; a
    Chinese sentence ends at 。！？ without a blank after it, and the spacing is kept."""
    from mailer.render.compiler import web_paragraphs

    assert web_paragraphs((paragraph,)) == ((kept,) if kept else ())
