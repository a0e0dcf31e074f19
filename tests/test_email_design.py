"""The issue email and web edition as issue 15 asks: headline index, View in browser at the
top, Forwarded line, logo and accent per list, a greeting only for readers with a name, dark
mode that keeps the source label, and a web edition without mail-only lines."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from lxml import html as lxml_html
from sqlalchemy import update

from mailer.config import Settings
from mailer.errors import RenderError
from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue
from mailer.render.colours import contrast, readable_on
from mailer.render.compiler import CARD, DARK_CARD, Branding, RenderedIssue, render_issue
from mailer.render.links import item_anchor
from mailer.render.message import MessageTemplate, build_preview_message
from mailer.render.tokens import Signer
from mailer.sending import publish
from mailer.sending.personalize import reader_message
from mailer.transports.outbox import OutboxTransport
from subscribers import store
from subscribers.list_settings import ListChanges, update_list
from subscribers.models import Subscriber
from tests.conftest import TEST_SECRET_KEY, Database
from tests.delivery_helpers import seed_list

FULL = Path(__file__).parent / "fixtures" / "issues" / "brief-full.txt"
BASE = "https://north.example"
BRANDING = Branding(
    "The North Brief",
    BASE,
    "1 Quay Road\nBristol",
    archive_url=f"{BASE}/archive/north/0123456789abcdef",
    subscribe_url=f"{BASE}/subscribe/north",
)
VALUES = {
    "unsubscribe_url": f"{BASE}/unsubscribe/tok",
    "preferences_url": f"{BASE}/preferences/tok",
}


@pytest.fixture(scope="module")
def full() -> tuple[Issue, RenderedIssue]:
    issue = parse_issue_file(FULL)
    return issue, render_issue(issue, BRANDING)


def doc_of(markup: str) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(markup)


def visible_text(markup: str) -> str:
    doc = doc_of(markup)
    for node in doc.xpath("//style|//title|//div[@class='preheader']"):
        node.drop_tree()
    return " ".join(doc.text_content().split())


# -- headline index ---------------------------------------------------------------------


def test_html_index_links_to_every_item_in_order(full: tuple[Issue, RenderedIssue]) -> None:
    issue, r = full
    doc = doc_of(r.personalize({**VALUES, "name": "Ana"})[0])
    heading = doc.xpath("//p[@class='index-heading']")[0].text_content()
    assert heading == "In today\u2019s brief"
    links = doc.xpath("//ol[@class='index-list']/li/a")
    assert [a.text_content() for a in links] == [i.title for i in issue.items]
    for n, a in enumerate(links, start=1):
        assert a.get("href") == f"#{item_anchor(n)}"
        [target] = doc.xpath(f"//*[@id='{item_anchor(n)}']")
        title = target.xpath(".//a[contains(@class,'item-title-link')]")[0]
        assert title.text_content() == issue.items[n - 1].title
    # the index comes before the first item
    assert html_pos(doc, "index-list") < html_pos(doc, "item-title-link")


def html_pos(doc: lxml_html.HtmlElement, cls: str) -> int:
    everything = list(doc.iter())
    return everything.index(doc.xpath(f"//*[contains(@class,'{cls}')]")[0])


def test_text_index_is_a_numbered_list_before_the_items(full: tuple[Issue, RenderedIssue]) -> None:
    issue, r = full
    text = r.personalize({**VALUES, "name": "Ana"})[1]
    head, _, rest = text.partition("In today's brief:\n")
    assert rest, "no index in the text part"
    index = rest.split("\n\n")[0].splitlines()
    numbered = [ln for ln in index if not ln.startswith(" ")]
    assert [ln.split(". ", 1)[0] for ln in numbered] == [str(n) for n in range(1, 10)]
    joined = " ".join(ln.strip() for ln in index)
    for n, item in enumerate(issue.items, start=1):
        assert f"{n}. {item.title}" in joined
    assert all(len(ln) <= 72 for ln in index)
    assert "1. " + issue.items[0].title not in head


def test_view_in_browser_first_and_forwarded_line_in_the_footer(
    full: tuple[Issue, RenderedIssue],
) -> None:
    _, r = full
    html, text = r.personalize({**VALUES, "name": "Ana"})
    doc = doc_of(html)
    first_link = doc.xpath("//body//a")[0]
    assert (first_link.text_content(), first_link.get("href")) == (
        "View in browser",
        BRANDING.archive_url,
    )
    forward = doc.xpath("//p[@class='footer-forward']")[0]
    assert forward.text_content().startswith("Forwarded this email?")
    assert forward.xpath(".//a")[0].get("href") == BRANDING.subscribe_url
    lines = text.splitlines()
    assert lines.index("View in browser:") < 6 and BRANDING.archive_url in lines[:6]
    at = lines.index("Forwarded this email? Subscribe to get The North Brief yourself:")
    assert lines[at + 1] == BRANDING.subscribe_url


# -- the greeting -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "\n\t", None])
def test_a_nameless_reader_gets_no_greeting_line(
    full: tuple[Issue, RenderedIssue], name: str | None
) -> None:
    _, r = full
    values = dict(VALUES) if name is None else {**VALUES, "name": name}
    html, text = r.personalize(values)
    assert "Hello" not in visible_text(html) and "Hello" not in text
    assert not "".join(doc_of(html).xpath("//p[@class='greeting']//text()")).strip()
    # the text goes from the top links straight to the intro, no stray greeting words
    assert "\n\nWelcome to this edition" in text or "\nWelcome to this edition" in text


def test_a_named_reader_is_greeted_and_the_list_chooses_the_words(
    full: tuple[Issue, RenderedIssue],
) -> None:
    issue, r = full
    html, text = r.personalize({**VALUES, "name": "Ana <b>Lima</b>"})
    assert (
        doc_of(html).xpath("//p[@class='greeting']")[0].text_content() == "Hello Ana <b>Lima</b>,"
    )
    assert "\nHello Ana <b>Lima</b>,\nWelcome to this edition" in text
    dear = render_issue(issue, Branding("N", BASE, "a", greeting="Dear"))
    assert "Dear Zoltan," in dear.personalize({**VALUES, "name": "Zoltan"})[1]
    none = render_issue(issue, Branding("N", BASE, "a", greeting=""))
    h, t = none.personalize({**VALUES, "name": "Zoltan"})
    assert "Zoltan" not in visible_text(h) and "Hello" not in t and "Zoltan" not in t


def _parts(eml: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(eml, policy=email.policy.default)
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


def test_greeting_through_the_engines_message_builder(full: tuple[Issue, RenderedIssue]) -> None:
    """The MIME template and reader_message (the engine's per-reader path, SES fields too)
    greet by the list's word, and not at all without a name."""
    _, r = full
    template = MessageTemplate.build(
        campaign_id=7,
        subject=r.subject,
        from_address="N <n@north.example>",
        html=r.html,
        text=r.text,
        list_name="N",
        list_slug="north",
        greeting="Dear",
    )
    signer = Signer.from_settings(Settings(secret_key=TEST_SECRET_KEY, env="test"))
    for name, want in (("Ana", "Dear Ana,"), ("", None)):
        msg = reader_message(
            template,
            signer,
            BASE,
            list_id=1,
            subscriber_id=2,
            delivery_id=3,
            email="ana@example.org",
            name=name,
        )
        assert msg.fields["greeting"] == (want or "")
        html, text = _parts(msg.raw)
        if want:
            assert want in visible_text(html) and want in text
        else:
            assert "Dear" not in visible_text(html) and "Dear" not in text
    preview = build_preview_message(
        r,
        from_address="N <n@north.example>",
        to="x@example.org",
        unsubscribe_url=VALUES["unsubscribe_url"],
        preferences_url=VALUES["preferences_url"],
    )
    html, text = _parts(preview)
    assert "Hello" not in visible_text(html) and "Hello" not in text


# -- logo, accent, dark mode ------------------------------------------------------------


def test_logo_and_accent_show_and_stay_readable() -> None:
    issue = parse_issue_file(FULL)
    light = "#f5d90a"  # a yellow no one could read on white
    r = render_issue(
        issue, Branding("N", BASE, "a", logo_url=f"{BASE}/logo.png", accent_color=light.upper())
    )
    doc = doc_of(r.personalize({**VALUES, "name": "Ana"})[0])
    [img] = doc.xpath("//img")
    assert (img.get("src"), img.get("alt")) == (f"{BASE}/logo.png", "N")
    label = doc.xpath("//p[@class='item-source']")[0].get("style").replace(" ", "")
    on_white = readable_on(light, CARD)
    assert f"color:{on_white}" in label and contrast(on_white, CARD) >= 4.5
    band = doc.xpath(f"//td[contains(@style,'border-top:4px solid {light}')]")
    assert band  # the brand band keeps the chosen colour
    dark_css = " ".join(s.text_content() for s in doc.xpath("//style"))
    on_dark = readable_on(light, DARK_CARD)
    assert contrast(on_dark, DARK_CARD) >= 4.5
    assert ".mb-body .item-source, .mb-body .more-link" in dark_css
    assert "[data-ogsc] .item-source" in dark_css and on_dark in dark_css
    assert not doc_of(r.for_archive()).xpath("//img[@src='javascript:']")


@pytest.mark.parametrize("accent", ["#000000", "#ffffff", "#9b1c1c", "#1a5fb4", "#808080"])
def test_accent_is_readable_on_both_cards(accent: str) -> None:
    assert contrast(readable_on(accent, CARD), CARD) >= 4.5
    assert contrast(readable_on(accent, DARK_CARD), DARK_CARD) >= 4.5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logo_url", "http://north.example/logo.png"),
        ("logo_url", "javascript:alert(1)"),
        ("logo_url", 'https://north.example/a"onerror="x.png'),
        ("logo_url", "https://user:pw@north.example/logo.png"),
        ("logo_url", "https://north.example/a b.png"),
        ("accent_color", "red"),
        ("accent_color", "#fff"),
        ("accent_color", "#12345g"),
        ("accent_color", "#123456;}body{display:none"),
        ("greeting", "Hi\nBcc: x"),
    ],
)
def test_branding_refuses_bad_logo_accent_and_greeting(field: str, value: str) -> None:
    with pytest.raises(RenderError) as exc:
        Branding("N", BASE, "a", **{field: value})
    assert field in str(exc.value)


def test_accent_is_stored_lowercase() -> None:
    assert Branding("N", BASE, "a", accent_color="#1A5FB4").accent_color == "#1a5fb4"


# -- the web edition ----------------------------------------------------------------------


def test_web_edition_has_the_title_and_no_mail_only_lines(
    full: tuple[Issue, RenderedIssue],
) -> None:
    issue, r = full
    page = r.for_archive()
    doc = doc_of(page)
    assert doc.xpath("//h1[@class='issue-title']")[0].text_content() == issue.subject
    shown = visible_text(page)
    for gone in (
        "Reply to this email",
        "Forwarded this",
        "Unsubscribe",
        "View in browser",
        "Manage preferences",
        "Hello",
        "%%",
    ):
        assert gone not in shown, gone
    # the mail-only sentence goes whole (its paragraph with it); other text and every item stay
    assert "visit our website at www.northbrief.example for past editions" not in shown
    assert issue.closing[0][:60] in shown
    assert [a.text_content() for a in doc.xpath("//a[contains(@class,'item-title-link')]")] == [
        i.title for i in issue.items
    ]
    assert doc.xpath("//ol[@class='index-list']/li")
    # the email keeps what the web edition drops
    assert "Reply to this email" in visible_text(r.personalize({**VALUES, "name": ""})[0])


# -- through the engine, from a real list (SQLite and PostgreSQL) ------------------------


def test_engine_greets_named_readers_with_the_lists_word_and_nameless_ones_not_at(
    db: Database,
) -> None:
    seed_list(db.sessions, 2)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        update_list(s, mlist, ListChanges(greeting="Dear", accent_color="#1a5fb4"))
        s.execute(
            update(Subscriber).where(Subscriber.email.like("reader00002@%")).values(name=None)
        )
    with db.sessions() as s:
        mlist = store.get_list(s, "brief")
    settings = db.settings()
    issue = parse_issue_file(FULL)
    rendered = publish.render_for(settings, mlist, issue)
    created = publish.create(db.sessions, mlist, issue, rendered)
    publish.run(settings, db.sessions, OutboxTransport(settings.outbox_dir), created.campaign_id)
    bodies = {}
    for path in (settings.outbox_dir / str(created.campaign_id)).glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        bodies[str(msg["To"])] = _parts(path.read_bytes())
    named_html, named_text = bodies["reader00001@example.com"]
    assert "Dear Reader 00001," in visible_text(named_html)
    assert "\nDear Reader 00001,\n" in named_text.replace("\r\n", "\n")
    bare_html, bare_text = bodies["reader00002@example.com"]
    for body in (visible_text(bare_html), bare_text):
        assert "Dear" not in body and "Hello" not in body
    assert "#1a5fb4" in named_html  # the list's accent (band) reached the mail


def test_hostile_greeting_is_text_and_cjk_index_lines_fit() -> None:
    issue = parse_issue_file(FULL)
    long_cjk = "深圳芯片初创公司表示将停止复制外国设计并把资金投入基础研究" * 2
    items = (issue.items[0].__class__(long_cjk, "新华社", ("一段中文摘要。",), "https://x.cn/a"),)
    cjk = Issue(**{**issue.__dict__, "items": items + issue.items[1:]})
    r = render_issue(cjk, Branding("N", BASE, "a", greeting='<img src=x onerror="alert(1)">'))
    html, text = r.personalize({**VALUES, "name": "<b>Ana</b>"})
    doc = doc_of(html)
    assert not doc.xpath("//b|//img")
    assert doc.xpath("//p[@class='greeting']")[0].text_content().startswith("<img src=x")
    index = text.partition("In today's brief:\n")[2].split("\n\n")[0].splitlines()
    first = [ln for ln in index if ln.startswith("1. ") or ln.startswith("   ")][:4]
    assert len(first) >= 2 and all(ln.startswith("   ") for ln in first[1:])
    wide = sum(2 if "\u4e00" <= ch <= "\u9fff" else 1 for ch in first[0])
    assert all(sum(2 if "\u4e00" <= ch <= "\u9fff" else 1 for ch in ln) <= 72 for ln in first), (
        first
    )
    assert wide > 40
