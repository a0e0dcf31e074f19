"""Rendering: structure of the HTML, the plain text, placeholders, personalisation, warnings."""

from __future__ import annotations

import datetime
import html as htmlmod
import logging
import re
from collections import Counter
from pathlib import Path

import jinja2
import pytest
from lxml import html as lxml_html

from mailer.config import Settings
from mailer.errors import RenderError
from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue, Item
from mailer.render.compiler import (
    FIELDS,
    LINE_MAX_OCTETS,
    Branding,
    RenderedIssue,
    placeholder,
    render_issue,
    split_template,
    wrap_text,
)
from mailer.render.placeholders import greeting_line

FIXTURES = Path(__file__).parent / "fixtures" / "issues"
BRANDING = Branding(
    newsletter_name="The Harbour Dispatch",
    base_url="https://dispatch.example",
    postal_address="Harbour Dispatch Ltd\n12 Quay Street\nBristol BS1 4XY",
    archive_url="https://dispatch.example/archive/2025-03-03",
)
VALUES = {
    "unsubscribe_url": "https://dispatch.example/unsubscribe/tok?a=1&b=2",
    "preferences_url": "https://dispatch.example/preferences/tok",
    "name": "Ana",
}


@pytest.fixture(scope="module")
def basic() -> tuple[Issue, RenderedIssue]:
    issue = parse_issue_file(FIXTURES / "brief-basic.txt")
    return issue, render_issue(issue, BRANDING)


def body_text(markup: str) -> str:
    """Visible text of an HTML document, whitespace collapsed."""
    doc = lxml_html.document_fromstring(markup)
    for bad in doc.xpath("//style|//title|//head"):
        bad.drop_tree()
    return " ".join(doc.text_content().split())


def squash(s: str) -> str:
    return "".join(s.split())


# -- HTML ----------------------------------------------------------------------------


def test_html_structure(basic: tuple[Issue, RenderedIssue]) -> None:
    issue, r = basic
    html, _ = r.personalize(VALUES)
    assert html.startswith("<!doctype html>")
    doc = lxml_html.document_fromstring(html)
    assert doc.get("lang") == "en"
    metas = {m.get("name"): m.get("content") for m in doc.xpath("//meta[@name]")}
    assert metas["color-scheme"] == "light dark"
    assert metas["viewport"].startswith("width=device-width")
    assert doc.findtext(".//title") == issue.subject
    tables = doc.xpath("//table")
    assert tables and all(t.get("role") == "presentation" for t in tables)
    # hidden preheader: the first text of the body (what inboxes preview), hidden by
    # display and size, never by a colour (SpamAssassin's HTML_FONT_LOW_CONTRAST)
    pre = doc.xpath("//div[@class='preheader']")[0]
    style = pre.get("style").replace(" ", "")
    assert "display:none" in style and "color" not in style
    assert doc.xpath("//body")[0].text_content().strip().startswith(issue.preheader)
    # dark mode and mobile rules survived CSS inlining
    styles = " ".join(s.text_content() for s in doc.xpath("//style"))
    assert "prefers-color-scheme: dark" in styles and "max-width: 480px" in styles
    # nothing external is needed: no stylesheet links, imports, web fonts or images
    assert not doc.xpath("//link|//img|//script")
    assert "@import" not in html and "fonts.googleapis" not in html and "url(" not in styles


def test_html_holds_every_item_with_linked_title_source_summary_and_read_more(
    basic: tuple[Issue, RenderedIssue],
) -> None:
    issue, r = basic
    html, _ = r.personalize(VALUES)
    doc = lxml_html.document_fromstring(html)
    titles = doc.xpath("//a[contains(@class,'item-title-link')]")
    assert [a.text_content() for a in titles] == [i.title for i in issue.items]
    assert [a.get("href") for a in titles] == [i.url for i in issue.items]
    mores = doc.xpath("//a[contains(@class,'more-link')]")
    assert [a.get("href") for a in mores] == [i.url for i in issue.items]
    assert all("Read more" in a.text_content() for a in mores)
    sources = [p.text_content() for p in doc.xpath("//p[contains(@class,'item-source')]")]
    assert sources == [i.source for i in issue.items]
    text = body_text(html)
    for para in (*issue.intro, *issue.closing, *(p for i in issue.items for p in i.paragraphs)):
        assert " ".join(para.split()) in text
    assert "Monday, March 3, 2025" in text and "The Harbour Dispatch" in text


def test_footer_links_reason_and_address(basic: tuple[Issue, RenderedIssue]) -> None:
    _, r = basic
    html, _ = r.personalize(VALUES)
    doc = lxml_html.document_fromstring(html)
    links = {
        a.text_content(): a.get("href") for a in doc.xpath("//a[contains(@class,'footer-link')]")
    }
    assert links == {
        "Unsubscribe": VALUES["unsubscribe_url"],
        "Manage preferences": VALUES["preferences_url"],
        "Past issues": BRANDING.archive_index_url,
    }
    top = doc.xpath("//a[contains(@class,'topbar-link')]")
    assert [(a.text_content(), a.get("href")) for a in top] == [
        ("View in browser", BRANDING.archive_url)
    ]
    text = body_text(html)
    assert BRANDING.reason_text in text and "dispatch.example" in BRANDING.reason_text
    address = doc.xpath("//p[contains(@class,'footer-address')]")[0]
    assert [address.text, *(br.tail for br in address.findall("br"))] == [
        "Harbour Dispatch Ltd",
        "12 Quay Street",
        "Bristol BS1 4XY",
    ]
    assert "Hello Ana" in text


# -- plain text ----------------------------------------------------------------------


def test_text_part_has_everything_wrapped(basic: tuple[Issue, RenderedIssue]) -> None:
    issue, r = basic
    _, text = r.personalize(VALUES)
    lines = text.split("\n")
    for item in issue.items:
        assert item.url in lines, "each URL sits whole on its own line"
        assert f"Source: {item.source}" in lines
        for para in item.paragraphs:
            assert squash(para) in squash(text)
        assert squash(item.title) in squash(text)
    for para in (*issue.intro, *issue.closing):
        assert squash(para) in squash(text)
    for line in lines:
        assert len(line.encode("utf-8")) <= LINE_MAX_OCTETS
        if "://" not in line:
            assert wide_len(line) <= 72, line
    assert VALUES["unsubscribe_url"] in lines and VALUES["preferences_url"] in lines
    assert BRANDING.archive_url in lines[:6] and "Hello Ana," in lines


def wide_len(s: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def test_wrap_text_never_breaks_urls_and_wraps_cjk() -> None:
    url = "https://example.com/" + "a" * 120 + "?q=1"
    out = wrap_text(f"see {url} now and then " + "word " * 30)
    assert url in out.split("\n")
    assert all(wide_len(ln) <= 72 for ln in out.split("\n") if "://" not in ln)
    cjk = "深圳的无人机制造商必须在出口之前获得许可证，" * 8
    lines = wrap_text(cjk).split("\n")
    assert len(lines) > 3 and all(wide_len(ln) <= 72 for ln in lines)
    assert "".join(lines) == cjk
    assert not any(ln.startswith(("，", "。")) for ln in lines)
    long_word = "x" * 200
    assert wrap_text(long_word).split("\n") == ["x" * 72, "x" * 72, "x" * 56]
    family = "👩\u200d👩\u200d👧" * 40
    assert "\u200d\n" not in wrap_text(family) and "\n\u200d" not in wrap_text(family)
    assert wrap_text("a\u00a0b c", width=3) == "a\u00a0b\nc"


def test_text_lines_stay_under_998_octets_even_with_a_giant_url() -> None:
    giant = "https://example.com/" + "é" * 1200
    issue = Issue(
        "Subject",
        "Pre",
        None,
        (),
        (Item("Title", "Source", ("Summary.",), giant),),
        (),
    )
    r = render_issue(issue, BRANDING)
    assert all(len(ln.encode("utf-8")) <= LINE_MAX_OCTETS for ln in r.text.split("\n"))
    assert any("998 octets" in w for w in r.warnings)


# -- placeholders and personalisation --------------------------------------------------


def test_split_template_shape(basic: tuple[Issue, RenderedIssue]) -> None:
    _, r = basic
    for body in (r.html, r.text):
        chunks, names = split_template(body)
        assert len(chunks) == len(names) + 1
        # the name is in the greeting line, which is one placeholder (issue 15)
        assert Counter(names) == {"unsubscribe_url": 1, "preferences_url": 1, "greeting": 1}
        rebuilt = chunks[0] + "".join(
            placeholder(n) + c for n, c in zip(names, chunks[1:], strict=True)
        )
        assert rebuilt == body
    assert split_template("no fields") == (("no fields",), ())
    with pytest.raises(RenderError):
        placeholder("email")


def test_personalize_escapes_html_and_strips_line_breaks(
    basic: tuple[Issue, RenderedIssue],
) -> None:
    _, r = basic
    evil = {
        "unsubscribe_url": 'https://x.example/u?a=1&b="><script>alert(1)</script>',
        "preferences_url": "https://x.example/p",
        "name": "<img src=x onerror=alert(1)>\r\nBcc: victim@example.com",
    }
    html, text = r.personalize(evil)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    doc = lxml_html.document_fromstring(html)
    unsub = doc.xpath("//a[text()='Unsubscribe']")[0]
    assert unsub.get("href") == evil["unsubscribe_url"]  # the attribute decodes back exactly
    assert "<img src=x onerror=alert(1)>  Bcc: victim@example.com" in text
    assert "\r" not in text and "\nBcc:" not in text
    # name may be missing; the URLs may not
    html2, _ = r.personalize({k: v for k, v in VALUES.items() if k != "name"})
    assert "%%" not in html2
    with pytest.raises(RenderError, match="unsubscribe_url"):
        r.personalize({"preferences_url": "https://x.example/p"})


def test_content_cannot_forge_placeholders() -> None:
    forged = " ".join(placeholder(f) for f in FIELDS)
    issue = Issue(
        subject=f"Subject {forged}",
        preheader=f"Pre {forged}",
        date=None,
        # overlapping forgeries: breaking the first must not complete the second
        intro=(f"Intro {forged} and %%%name%%% and %%unsubscribe_url%%name%%%%name%%",),
        items=(
            Item(
                title=f"Title {forged}",
                source=f"Src {placeholder('name')}",
                paragraphs=(f"Body {forged}",),
                url="https://evil.example/%%unsubscribe_url%%?x=%%name%%",
            ),
        ),
        closing=(f"Bye {forged}",),
    )
    r = render_issue(issue, BRANDING)
    for body in (r.html, r.text, r.for_archive()):
        names = split_template(body)[1]
        assert len(names) <= 3
    assert Counter(split_template(r.html)[1]) == {n: 1 for n in FIELDS if n != "name"}
    assert Counter(split_template(r.text)[1]) == {n: 1 for n in FIELDS if n != "name"}
    assert split_template(r.for_archive())[1] == ()
    marker = {
        "unsubscribe_url": "UNSUB-VALUE",
        "preferences_url": "PREF-VALUE",
        "name": "NAME-VALUE",
    }
    html, text = r.personalize(marker)
    for body in (html, text):
        assert body.count("UNSUB-VALUE") == 1 and body.count("NAME-VALUE") == 1
    # the forged text is still shown to the reader, just inert
    assert "%%unsubscribe_url%%" in body_text(html).replace("\u2060", "")
    assert "%%unsubscribe_url%%" in text.replace("\u2060", "")


def test_placeholders_survive_jinja_mjml_and_premailer_unchanged() -> None:
    """The syntax itself passes all three tools, in text and in href attributes."""
    from mjml import mjml2html
    from premailer import Premailer

    ph = [placeholder(f) for f in FIELDS]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    tpl = env.from_string(
        "<mjml><mj-body><mj-section><mj-column><mj-text>"
        '{% for p in ph %}<a href="{{ p }}">{{ p }}</a>{% endfor %}'
        "</mj-text></mj-column></mj-section></mj-body></mjml>"
    )
    out = Premailer(
        mjml2html(tpl.render(ph=ph), fonts={}),
        allow_network=False,
        disable_link_rewrites=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    for p in ph:
        assert f'href="{p}"' in out and f">{p}</a>" in out


def test_personalize_matches_splicing(basic: tuple[Issue, RenderedIssue]) -> None:
    """What the delivery engine does with split_template equals personalize()."""
    _, r = basic
    chunks, names = split_template(r.html)
    values = {**VALUES, "greeting": greeting_line(r.greeting, VALUES["name"])}
    spliced = chunks[0] + "".join(
        htmlmod.escape(values[n], quote=True) + c for n, c in zip(names, chunks[1:], strict=True)
    )
    assert spliced == r.personalize(VALUES)[0]


# -- web edition -----------------------------------------------------------------------


def test_for_archive_has_no_personal_links(basic: tuple[Issue, RenderedIssue]) -> None:
    issue, r = basic
    page = r.for_archive()
    assert "%%" not in page
    text = body_text(page)
    assert "Unsubscribe" not in text and "preferences" not in text and "Hello" not in text
    doc = lxml_html.document_fromstring(page)
    hrefs = {
        a.text_content(): a.get("href") for a in doc.xpath("//a[contains(@class,'footer-link')]")
    }
    assert hrefs == {
        "Subscribe": "https://dispatch.example/subscribe",
        "Past issues": "https://dispatch.example/archive",
    }
    for item in issue.items:
        assert item.title in text
    with pytest.raises(RenderError):
        RenderedIssue("s", "p", "h", "t").for_archive()


def test_rendered_snapshot_round_trip(basic: tuple[Issue, RenderedIssue]) -> None:
    _, r = basic
    again = RenderedIssue.from_dict(r.to_dict())
    assert again == r and again.personalize(VALUES) == r.personalize(VALUES)
    with pytest.raises(RenderError):
        RenderedIssue.from_dict({"subject": "s"})


# -- warnings and branding -------------------------------------------------------------


def test_clean_issue_has_no_warnings(basic: tuple[Issue, RenderedIssue]) -> None:
    _, r = basic
    assert r.warnings == (
        "subject is 81 characters: inboxes cut it, and over 78 it is folded across header lines"
        " (set a shorter one: --subject, or the list's subject template)",
    )
    md = render_issue(parse_issue_file(FIXTURES / "issue.md"), BRANDING)
    assert md.warnings == ()


def test_warnings_for_what_the_editor_should_fix() -> None:
    long_para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 60
    items = tuple(
        Item(f"Story {n}", "Source", (long_para,), f"https://example.com/{n}") for n in range(40)
    )
    issue = Issue(
        subject="S" * 90,
        preheader="",
        date=datetime.date(2025, 3, 3),
        intro=(),
        items=(
            *items,
            Item("Plain http", "Source", ("x",), "http://example.com/http"),
            Item("Again", "Source", ("x",), "https://example.com/1"),
            Item("T" * 210, "S" * 70, ("x",), "https://example.com/long"),
        ),
        closing=(),
    )
    branding = Branding("News", "http://localhost:8000", "")
    warnings = "\n".join(render_issue(issue, branding).warnings)
    for fragment in (
        "Gmail clips",
        "subject is 90 characters",
        "no preheader",
        "item 41 (Plain http): link is not absolute https",
        "item 42 (Again): same link as item 2",
        "title is 210 characters",
        "source is 70 characters",
        "base URL (MAILER_BASE_URL) is not absolute https",
        "no postal address (MAILER_POSTAL_ADDRESS)",
    ):
        assert fragment in warnings


def test_branding_from_settings_and_validation() -> None:
    settings = Settings(base_url="https://news.example/", postal_address="1 Road, Town")
    b = Branding.from_settings(settings, "The Brief", archive_url="https://news.example/a/1")
    assert (b.base_url, b.postal_address, b.archive_url) == (
        "https://news.example",
        "1 Road, Town",
        "https://news.example/a/1",
    )
    assert b.subscribe_url == "https://news.example/subscribe"
    assert b.archive_index_url == "https://news.example/archive"
    assert (
        b.reason_text == "You are receiving The Brief because you subscribed to it at news.example."
    )
    assert b.lang == "en"
    for bad in (
        {"newsletter_name": ""},
        {"base_url": "ftp://x"},
        {"archive_url": "javascript:alert(1)"},
        {"lang": "english please"},
    ):
        with pytest.raises(RenderError):
            Branding(
                **{
                    "newsletter_name": "N",
                    "base_url": "https://x.example",
                    "postal_address": "",
                    **bad,
                }
            )  # type: ignore[arg-type]


def test_rtl_language_and_no_greeting() -> None:
    issue = parse_issue_file(FIXTURES / "brief-crlf-bom.txt")
    b = Branding("نشرة", "https://x.example", "addr", lang="ar", greeting="")
    r = render_issue(issue, b)
    doc = lxml_html.document_fromstring(r.html)
    assert doc.get("lang") == "ar" and doc.get("dir") == "rtl"
    assert Counter(split_template(r.html)[1]) == {"unsubscribe_url": 1, "preferences_url": 1}
    assert re.search(r"^Friday, March 7, 2025$", r.text, re.M)


def test_html_is_ascii_and_non_ascii_values_survive(basic: tuple[Issue, RenderedIssue]) -> None:
    """ASCII-only HTML keeps the per-reader join a plain copy; content is unchanged."""
    issue, r = basic
    assert r.html.isascii() and r.for_archive().isascii()
    html, text = r.personalize({**VALUES, "name": "张伟 😀"})
    assert html.isascii()
    assert "Hello 张伟 😀" in body_text(html) and "Hello 张伟 😀" in text
    assert issue.items[2].title in body_text(html)  # the ☕ title, via a character reference
