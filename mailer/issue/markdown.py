"""Markdown with YAML front matter: the format for hand-written issues.

::

    ---
    subject: Headline one; Headline two     (required)
    preheader: The teaser shown in the inbox (optional, default empty)
    date: 2025-01-30                        (optional; else "Today is ..." in the intro)
    list: china-brief                       (optional: the list this issue is meant for)
    ---

    Intro paragraphs.

    ## First item title
    source: Nikkei Asia
    One or more summary paragraphs.
    https://example.com/story               (or <https://...> or [Read more](https://...))

    ## Second item title
    ...

    ---
    Closing paragraphs come after a `---` rule that follows the last item.

Decisions: paragraphs are separated by blank lines, and the lines of one paragraph are
joined with spaces. Only ``## `` headings exist (each starts an item); ``#`` or ``###`` are
refused, as are a ``---`` before the first item and a heading after the closing rule. Each
item has exactly one ``source:`` line and exactly one link line (a line holding nothing
but the link), anywhere in the item. Inline Markdown is reduced to plain text: emphasis
and inline HTML tags are dropped, ``[text](url)`` inside a paragraph becomes
``text (url)``, backslash escapes and entities are decoded. Lists, quotes and code blocks
are not special: their lines are paragraph text.
"""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from markdown_it import MarkdownIt

from mailer.errors import IssueParseError
from mailer.issue.common import (
    Line,
    check_url,
    clean,
    date_from_intro,
    is_foreign_url_line,
    is_url_line,
    normalise_subject,
    shorten,
    split_lines,
)
from mailer.issue.model import Issue, Item

KEYS = ("subject", "preheader", "date", "list")
_HEADING = re.compile(r"^(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
_RULE = re.compile(r"^(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_SOURCE = re.compile(r"^source\s*:(.*)$", re.IGNORECASE)
_LINK = re.compile(r"^\[(?P<text>[^\]]*)\]\((?P<url>\S+)\)$")
_ANGLE = re.compile(r"^<(?P<url>[^<>\s]+)>$")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_INLINE_ESCAPE = re.compile(r"([\\`*_\[\]<>&!])")


@dataclass
class _ItemDraft:
    title: str
    line: int
    source: str = ""
    link: str = ""
    link_line: int = 0
    paragraphs: list[Line] = field(default_factory=list)


def parse(text: str, *, source: str = "issue") -> Issue:
    """Parse a Markdown issue into an Issue, or raise IssueParseError naming the line."""
    lines = split_lines(text, source=source)
    meta, body_start = _front_matter(lines, source=source)
    subject_raw = meta.get("subject")
    if subject_raw is None:
        raise IssueParseError("the front matter has no subject", line=1, source=source)
    subject = normalise_subject(
        _meta_text(meta, "subject", lines, source),
        lineno=_key_line(lines, "subject"),
        source=source,
    )
    preheader = _meta_text(meta, "preheader", lines, source) if "preheader" in meta else ""
    date = _meta_date(meta, lines, source)

    intro: list[Line] = []
    closing: list[Line] = []
    drafts: list[_ItemDraft] = []
    state = "intro"
    buf: list[Line] = []

    def flush() -> None:
        if not buf:
            return
        para = clean(inline_text(" ".join(line.text for line in buf)))
        if para:
            target = {"intro": intro, "closing": closing}.get(state)
            (target if target is not None else drafts[-1].paragraphs).append(Line(buf[0].no, para))
        buf.clear()

    for no, raw in enumerate(lines[body_start:], start=body_start + 1):
        line = clean(raw)
        if not line:
            flush()
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            if len(heading.group(1)) != 2:
                raise IssueParseError(
                    f"only '## Title' headings are allowed (they start items), found "
                    f"{heading.group(1)!r}",
                    line=no,
                    source=source,
                )
            if state == "closing":
                raise IssueParseError(
                    "an item heading after the closing '---' rule: the closing comes last",
                    line=no,
                    source=source,
                )
            title = clean(inline_text(heading.group(2) or ""))
            if not title:
                raise IssueParseError("an item heading without a title", line=no, source=source)
            drafts.append(_ItemDraft(title=title, line=no))
            state = "item"
            continue
        if _RULE.match(line):
            flush()
            if state == "intro":
                raise IssueParseError(
                    "a '---' rule before the first item; the closing rule goes after the last item",
                    line=no,
                    source=source,
                )
            if state == "closing":
                raise IssueParseError("a second closing '---' rule", line=no, source=source)
            state = "closing"
            continue
        if state == "item":
            item = drafts[-1]
            src = _SOURCE.match(line)
            if src:
                flush()
                if item.source:
                    raise IssueParseError(
                        f"item {shorten(item.title)!r} has a second source line",
                        line=no,
                        source=source,
                    )
                item.source = clean(inline_text(src.group(1)))
                if not item.source:
                    raise IssueParseError("the source line is empty", line=no, source=source)
                continue
            url = link_line_url(line)
            if url is not None:
                flush()
                if item.link:
                    raise IssueParseError(
                        f"item {shorten(item.title)!r} already has its link on line "
                        f"{item.link_line}: one link line per item",
                        line=no,
                        source=source,
                    )
                item.link = check_url(url, line=no, source=source)
                item.link_line = no
                continue
        buf.append(Line(no, line))
    flush()

    if not drafts:
        raise IssueParseError("no items: each item starts with a '## Title' heading", source=source)
    items = tuple(_finish(d, source=source) for d in drafts)
    return Issue(
        subject=subject,
        preheader=preheader,
        date=date if date is not None else date_from_intro(intro, source=source),
        intro=tuple(p.text for p in intro),
        items=items,
        closing=tuple(p.text for p in closing),
    )


def declared_list(text: str, *, source: str = "issue") -> str | None:
    """The ``list:`` slug of a Markdown issue's front matter, or None (brief files: None)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = split_lines(text, source=source)
    if not lines or lines[0].rstrip() != "---":
        return None
    meta, _ = _front_matter(lines, source=source)
    if meta.get("list") is None:
        return None
    slug = _meta_text(meta, "list", lines, source)
    if not _SLUG.match(slug):
        raise IssueParseError(
            f"list must be a list slug (letters, digits, '-', '_', '.'), got {slug!r}",
            line=_key_line(lines, "list"),
            source=source,
        )
    return slug


def link_line_url(line: str) -> str | None:
    """The URL when the whole line is a link (bare, <url> or [text](url)), else None.

    A whole-line link with a non-http(s) scheme is returned too, so that check_url can
    refuse it with a clear message.
    """
    for pattern in (_LINK, _ANGLE):
        m = pattern.match(line)
        if m:
            url = m.group("url")
            if is_url_line(url) or is_foreign_url_line(url):
                return url
    if is_url_line(line) or is_foreign_url_line(line):
        return line
    return None


def inline_text(text: str) -> str:
    """Inline Markdown to plain text (see the module docstring for the rules)."""
    if not text:
        return ""
    out: list[str] = []
    link_stack: list[tuple[str, int]] = []
    for block in _markdown().parseInline(text):
        for tok in block.children or ():
            kind = tok.type
            if kind in ("text", "code_inline"):
                out.append(tok.content)
            elif kind in ("softbreak", "hardbreak"):
                out.append(" ")
            elif kind == "image":
                out.append(tok.content)
            elif kind == "link_open":
                link_stack.append((str(tok.attrs.get("href", "")), len(out)))
            elif kind == "link_close" and link_stack:
                href, start = link_stack.pop()
                label = "".join(out[start:]).strip()
                if href and href not in (label, "mailto:" + label):
                    out.append(f" ({href})" if label else href)
            # emphasis markers and inline HTML tags carry no text: dropped
    return "".join(out)


def format_markdown(issue: Issue, *, list_slug: str | None = None) -> str:
    """Write an Issue as Markdown with front matter (what :func:`parse` reads back)."""
    meta: dict[str, Any] = {"subject": issue.subject}
    if issue.preheader:
        meta["preheader"] = issue.preheader
    if issue.date is not None:
        meta["date"] = issue.date
    if list_slug:
        meta["list"] = list_slug
    head = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=10_000)
    out = ["---", head.rstrip("\n"), "---", ""]
    for para in issue.intro:
        out += [_escape_paragraph(para), ""]
    for item in issue.items:
        title = _escape_inline(item.title).replace("#", "\\#")
        out += [f"## {title}", f"source: {_escape_inline(item.source)}", ""]
        for para in item.paragraphs:
            out += [_escape_paragraph(para), ""]
        out += [f"<{item.url}>", ""]
    if issue.closing:
        out += ["---", ""]
        for para in issue.closing:
            out += [_escape_paragraph(para), ""]
    return "\n".join(out)


# -- internals -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark")


def _escape_inline(text: str) -> str:
    return _INLINE_ESCAPE.sub(r"\\\1", text)


def _escape_paragraph(text: str) -> str:
    """Escape so that the paragraph reads back as itself and not as structure."""
    out = _escape_inline(text)
    if out.startswith(("#", "-")):  # heading or rule
        out = "\\" + out
    if _SOURCE.match(out) or link_line_url(out) is not None:  # source or link line
        out = out.replace(":", "\\:", 1)
    return out


def _front_matter(lines: list[str], *, source: str) -> tuple[dict[str, Any], int]:
    """The YAML mapping between the opening and closing '---', and the body's first index."""
    if not lines or lines[0].rstrip() != "---":
        raise IssueParseError(
            "a Markdown issue starts with YAML front matter: a '---' line", line=1, source=source
        )
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        raise IssueParseError(
            "the front matter opened on line 1 is never closed with a '---' line",
            line=1,
            source=source,
        )
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 2 if mark is not None else 1
        raise IssueParseError(
            f"front matter is not valid YAML: {err.problem or err}", line=line, source=source
        ) from err
    except Exception as err:  # any other failure of the YAML library means: unreadable
        raise IssueParseError(
            f"front matter is not valid YAML: {err}", line=1, source=source
        ) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise IssueParseError(
            "the front matter must be 'key: value' lines (subject, preheader, date, list)",
            line=2,
            source=source,
        )
    for key in data:
        if key not in KEYS:
            raise IssueParseError(
                f"unknown front matter key {str(key)!r} (known: {', '.join(KEYS)})",
                line=_key_line(lines[:end], str(key)),
                source=source,
            )
    return data, end + 1


def _key_line(lines: list[str], key: str) -> int:
    pattern = re.compile(rf"^\s*['\"]?{re.escape(key)}['\"]?\s*:")
    return next((i + 1 for i, line in enumerate(lines) if pattern.match(line)), 1)


def _meta_text(meta: dict[str, Any], key: str, lines: list[str], source: str) -> str:
    value = meta.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise IssueParseError(
            f"{key} must be text, got {type(value).__name__}",
            line=_key_line(lines, key),
            source=source,
        )
    text = clean(str(value).replace("\r", " ").replace("\n", " "))
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
        raise IssueParseError(
            f"{key} holds a control character", line=_key_line(lines, key), source=source
        )
    return text


def _meta_date(meta: dict[str, Any], lines: list[str], source: str) -> datetime.date | None:
    value = meta.get("date")
    line = _key_line(lines, "date")
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        raise IssueParseError(
            "date must be a day (YYYY-MM-DD), not a point in time", line=line, source=source
        )
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise IssueParseError(f"date must be YYYY-MM-DD, got {value!r}", line=line, source=source)


def _finish(draft: _ItemDraft, *, source: str) -> Item:
    title = shorten(draft.title)
    if not draft.source:
        raise IssueParseError(
            f"item {title!r} has no 'source: ...' line", line=draft.line, source=source
        )
    if not draft.paragraphs:
        raise IssueParseError(
            f"item {title!r} has no summary paragraph", line=draft.line, source=source
        )
    if not draft.link:
        raise IssueParseError(
            f"item {title!r} has no link: add a line holding its http(s) URL",
            line=draft.line,
            source=source,
        )
    return Item(
        title=draft.title,
        source=draft.source,
        paragraphs=tuple(p.text for p in draft.paragraphs),
        url=draft.link,
    )
