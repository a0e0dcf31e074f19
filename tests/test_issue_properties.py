"""Property tests: generated issues written out and read back; arbitrary input never crashes."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailer.errors import IssueParseError
from mailer.issue.brief import format_brief, source_shaped
from mailer.issue.common import clean, fold, is_foreign_url_line, is_url_line
from mailer.issue.files import decode_issue_bytes, parse_issue_file, parse_issue_text
from mailer.issue.markdown import format_markdown
from mailer.issue.model import Issue, Item
from mailer.render.compiler import FIELDS, Branding, placeholder, render_issue, split_template

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August"]
MONTHS += ["September", "October", "November", "December"]

# Words mix ASCII, accents, CJK, emoji, curly quotes and markup-ish punctuation.
ALPHABET = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list("éüñçøß中国上海深圳经济新闻😀🚀☕“”‘’—–…")
    + list(".,:!?()'\"&<>*_[]#%$@/\\-`~=+|{}")
)
word = st.text(ALPHABET, min_size=1, max_size=8)


def line(min_words: int, max_words: int) -> st.SearchStrategy[str]:
    """One clean line of text that is not a URL line (a URL line ends an item)."""
    return (
        st.lists(word, min_size=min_words, max_size=max_words)
        .map(" ".join)
        .filter(lambda t: t == clean(t) and not is_url_line(t) and not is_foreign_url_line(t))
    )


host = st.from_regex(r"[a-z]{1,10}(\.[a-z]{2,6}){1,2}", fullmatch=True)
path = st.from_regex(r"(/[A-Za-z0-9._~%-]{0,12}){0,4}", fullmatch=True)
query = st.from_regex(
    r"(\?[a-z]{1,6}=[A-Za-z0-9%-]{0,8}(&[a-z]{1,6}=[A-Za-z0-9]{0,8}){0,3})?", fullmatch=True
)
url = st.builds(
    lambda scheme, h, p, q: f"{scheme}://{h}{p}{q}",
    st.sampled_from(["https", "http"]),
    host,
    path,
    query.filter(lambda q: "utm_" not in q and "\n" not in q),
)
# A source is a publication's name: short, not ending like a sentence (mailer.issue.brief).
sources = st.lists(line(1, 3).filter(source_shaped), min_size=1, max_size=4, unique_by=fold)
SOURCE_LONGEST = 3 * 8 + 2


@st.composite
def issues(draw: st.DrawFn) -> Issue:
    """An issue in the brief's shape: the subject names the first item (as upstream does)."""
    pool = draw(sources)
    n_items = draw(st.integers(1, 5))
    titles = draw(
        st.lists(line(1, 10).filter(lambda t: ";" not in t), min_size=n_items, max_size=n_items)
    )
    named = [titles[0], *draw(st.lists(st.sampled_from(titles), max_size=2))]
    preheader = draw(st.one_of(st.sampled_from(titles), line(1, 8)))
    heads = {fold(h) for h in [*named, preheader]}
    known = heads | {fold(s) for s in pool}
    # prose: ends like a sentence and is longer than a source (the brief format's shapes)
    paragraph = (
        line(3, 16)
        .map(lambda t: t + ".")
        .filter(
            lambda t: (
                fold(t) not in known and "today is" not in t.lower() and len(t) > SOURCE_LONGEST
            )
        )
    )
    intro = draw(st.lists(paragraph, max_size=3))
    date = draw(
        st.one_of(st.none(), st.dates(datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)))
    )
    if date is not None:
        sentence = f"Today is {MONTHS[date.month - 1]} {date.day}, {date.year}."
        intro.insert(draw(st.integers(0, len(intro))), sentence)
    items = tuple(
        Item(
            title=title,
            source=draw(st.sampled_from(pool)),
            paragraphs=tuple(draw(st.lists(paragraph, min_size=1, max_size=4))),
            url=draw(url),
        )
        for title in titles
    )
    return Issue(
        subject="; ".join(dict.fromkeys(named)),
        preheader=preheader,
        date=date,
        intro=tuple(intro),
        items=items,
        closing=tuple(draw(st.lists(paragraph, max_size=3))),
    )


def messy(text: str, draw: st.DrawFn) -> str:
    """What real files look like: BOM, CRLF, trailing and leading blanks, no final newline."""
    lines = text.split("\n")
    out = []
    for ln in lines:
        if ln and draw(st.booleans()):
            ln = draw(st.sampled_from([" ", "\t", "  "])) + ln + draw(st.sampled_from([" ", "\t"]))
        out.append(ln)
        if draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from(["", "   ", "\t"])))
    body = draw(st.sampled_from(["\n", "\r\n"])).join(out)
    if draw(st.booleans()):
        body = body.rstrip("\r\n")
    return ("\ufeff" if draw(st.booleans()) else "") + body


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(issue=issues(), data=st.data())
def test_brief_round_trip(issue: Issue, data: st.DataObject) -> None:
    text = format_brief(issue, blank_lines=data.draw(st.booleans()))
    assert parse_issue_text(text) == issue
    assert parse_issue_text(messy(text, data.draw)) == issue


def _lines_with_roles(issue: Issue) -> list[tuple[str, tuple[str, int]]]:
    """The brief's lines (as format_brief writes them), each with (role, item index)."""
    out = [(issue.subject.replace("; ", ";"), ("subject", -1)), (issue.preheader, ("teaser", -1))]
    out += [(p, ("intro", -1)) for p in issue.intro]
    for n, item in enumerate(issue.items):
        out += [(item.title, ("title", n)), (item.source, ("source", n))]
        out += [(p, ("summary", n)) for p in item.paragraphs]
        out.append((item.url, ("url", n)))
    return out + [(p, ("closing", -1)) for p in issue.closing]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(issue=issues(), data=st.data())
def test_no_item_text_ever_ends_up_in_the_closing(issue: Issue, data: st.DataObject) -> None:
    """Any one item's URL line lost (the last one included): refused, naming the line where
    the orphaned item's title is, never read as closing text or another item's summary."""
    assert format_brief(issue) == "\n".join(t for t, _ in _lines_with_roles(issue)) + "\n"
    lost = data.draw(st.integers(0, len(issue.items) - 1))
    rows = [row for row in _lines_with_roles(issue) if row[1] != ("url", lost)]
    text = "\n".join(t for t, _ in rows) + "\n"
    try:
        parsed = parse_issue_text(text)
    except IssueParseError as err:
        if len(issue.items) == 1:
            assert "no items" in str(err)
            return
        orphan = lost + 1 if lost + 1 < len(issue.items) else lost
        assert err.line == rows.index((issue.items[orphan].title, ("title", orphan))) + 1, err
        assert "no URL line" in str(err)
    else:  # pragma: no cover - what the property forbids, shown in full
        raise AssertionError(f"parsed without item {lost}'s URL: closing={parsed.closing}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(issue=issues())
def test_markdown_round_trip(issue: Issue) -> None:
    assert parse_issue_text(format_markdown(issue)) == issue


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_arbitrary_text_only_ever_raises_issue_parse_error(text: str) -> None:
    for fmt in (None, "brief", "markdown"):
        with contextlib.suppress(IssueParseError):
            parse_issue_text(text, fmt=fmt)


url_line = st.one_of(url, st.just("ftp://x.example/f"), st.just("javascript:alert(1)"))


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.text(max_size=40),
            url_line,
            st.just(""),
            st.just("---"),
            st.just("## T"),
            st.just("source: S"),
            st.just("Today is May 5, 2025"),
            st.just("a;b"),
        ),
        max_size=25,
    ),
    nl=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_issue_shaped_noise_only_ever_raises_issue_parse_error(lines: list[str], nl: str) -> None:
    text = nl.join(lines)
    for fmt in (None, "brief", "markdown"):
        try:
            issue = parse_issue_text(text, fmt=fmt)
        except IssueParseError:
            continue
        assert issue.items and Issue.from_dict(issue.to_dict()) == issue


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_issue_parse_error(data: bytes) -> None:
    with contextlib.suppress(IssueParseError):
        parse_issue_text(decode_issue_bytes(data))


def test_arbitrary_file_goes_through_the_same_door(tmp_path: Path) -> None:
    path = tmp_path / "noise.txt"
    path.write_bytes(b"\x00\x01garbage\n")
    try:
        parse_issue_file(path)
    except IssueParseError as err:
        assert err.line == 1
    else:  # pragma: no cover - the NUL byte must be refused
        raise AssertionError("NUL byte accepted")


forgeries = st.lists(
    st.sampled_from([placeholder(f) for f in FIELDS] + ["%%", "%", "%%name", "name%%"]),
    min_size=1,
    max_size=6,
).map("".join)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(issue=issues(), junk=forgeries)
def test_rendering_never_lets_content_add_placeholders(issue: Issue, junk: str) -> None:
    first = issue.items[0]
    poisoned = Issue(
        subject=issue.subject,
        preheader=issue.preheader,
        date=issue.date,
        intro=(*issue.intro, junk),
        items=(
            Item(first.title + junk, first.source, (*first.paragraphs, junk), first.url),
            *issue.items[1:],
        ),
        closing=issue.closing,
    )
    assume(poisoned.items[0].title.strip())
    r = render_issue(poisoned, Branding("News", "https://news.example", "1 Road"))
    for body in (r.html, r.text):
        names = split_template(body)[1]
        assert sorted(names) == sorted(f for f in FIELDS if f != "name")  # name: in greeting
    assert split_template(r.for_archive())[1] == ()
