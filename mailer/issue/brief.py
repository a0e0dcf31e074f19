"""The upstream brief format: a line-oriented plain-text issue.

Every non-blank line is one unit (blank lines are optional and carry no meaning)::

    line 1   subject: the top headlines joined by ';'
    line 2   teaser headline (becomes the preheader)
             intro paragraph(s), one per line
             item title          \\
             item source          | repeated per item;
             summary paragraph(s) | the URL line (a lone http(s) URL)
             URL                 /  closes the item
             closing paragraph(s) after the last URL

Item boundaries come from the URL lines: after a URL, the next two lines are the next
item's title and source, and everything up to the following URL is its summary. Only the
first item has to be told apart from the intro: its title is the first line that is one of
the subject's headlines (or the teaser); failing that, the first pair of short lines (title
<= 250 chars, source <= 80) followed by a longer line.

A missing URL line would make an item melt into the one above it, or (the last item's) into
the closing, and be lost without a word. The parser refuses it, naming the line: a summary or
closing line that repeats one of the subject's headlines, or a known source name, with more
lines after it; and any three lines in a row, in a summary or in the closing, that have the
shape of an item's head (:func:`item_head_at`): a line of at most 250 characters (a title),
a source line (at most 80 characters, not ending like a sentence: no final ``. , ; : ! ?``),
then a line longer than that source (a summary). Prose paragraphs end like sentences, and a
sign-off ("Thanks for reading," / "The editors") has no longer line after it, so closing text
passes. The issue has no date line; "Today is <Month D, YYYY>" in the intro gives the date.
"""

from __future__ import annotations

from mailer.errors import IssueParseError
from mailer.issue.common import (
    Line,
    check_url,
    date_from_intro,
    fold,
    is_foreign_url_line,
    is_url_line,
    nonblank_lines,
    normalise_subject,
    shorten,
    split_subject,
)
from mailer.issue.model import Issue, Item

TITLE_MAX = 250
SOURCE_MAX = 80


def parse(text: str, *, source: str = "issue") -> Issue:
    """Parse brief-format text into an Issue, or raise IssueParseError naming the line."""
    lines = nonblank_lines(text, source=source)
    if not lines:
        raise IssueParseError("the file is empty", source=source)
    first = lines[0]
    if is_url_line(first.text) or is_foreign_url_line(first.text):
        raise IssueParseError(
            "line 1 must be the subject, found a URL", line=first.no, source=source
        )
    subject = normalise_subject(first.text, lineno=first.no, source=source)
    if len(lines) < 2:
        raise IssueParseError("no teaser line and no items after the subject", source=source)
    teaser = lines[1]
    if is_url_line(teaser.text) or is_foreign_url_line(teaser.text):
        raise IssueParseError(
            "the line after the subject must be the teaser headline, found a URL",
            line=teaser.no,
            source=source,
        )
    headlines = {fold(h) for h in split_subject(first.text)} | {fold(teaser.text)}

    blocks: list[list[Line]] = [[]]
    urls: list[Line] = []
    for line in lines[2:]:
        if is_foreign_url_line(line.text):
            raise IssueParseError(
                f"item link must be an http(s) URL, got {shorten(line.text)!r}",
                line=line.no,
                source=source,
            )
        if is_url_line(line.text):
            urls.append(line)
            blocks.append([])
        else:
            blocks[-1].append(line)
    if not urls:
        raise IssueParseError(
            "no items: each item ends with a line holding its http(s) URL, and none was found",
            source=source,
        )
    closing = blocks.pop()

    intro, first_item = _split_intro(blocks[0], urls[0], headlines, source=source)
    item_blocks = [first_item, *blocks[1:]]
    items: list[Item] = []
    for block, url in zip(item_blocks, urls, strict=True):
        if len(block) < 3:
            raise IssueParseError(
                "this URL closes an item without "
                + ("a title, " if not block else "")
                + "a source and a summary: an item is title, source, summary, URL",
                line=url.no,
                source=source,
            )
        items.append(
            Item(
                title=block[0].text,
                source=block[1].text,
                paragraphs=tuple(p.text for p in block[2:]),
                url=check_url(url.text, line=url.no, source=source),
            )
        )
    sources = {fold(it.source) for it in items}
    for run, last in [*((block[2:], False) for block in item_blocks), (closing, True)]:
        _refuse_item_shapes(run, after_last_url=last, source=source)
        _refuse_swallowed_items(run, headlines, sources, source=source)

    return Issue(
        subject=subject,
        preheader=teaser.text,
        date=date_from_intro(intro, source=source),
        intro=tuple(p.text for p in intro),
        items=tuple(items),
        closing=tuple(p.text for p in closing),
    )


def _split_intro(
    block: list[Line], url: Line, headlines: set[str], *, source: str
) -> tuple[list[Line], list[Line]]:
    """Tell the intro from the first item (title, source, summary...) before the first URL."""
    if len(block) < 3:
        raise IssueParseError(
            "the first item needs a title, a source and a summary before its URL",
            line=url.no,
            source=source,
        )
    last_start = len(block) - 2  # a title needs a source and one summary after it
    for i in range(last_start):
        if fold(block[i].text) in headlines:
            return block[:i], block[i:]
    for i in range(last_start):
        title, src, summary = block[i].text, block[i + 1].text, block[i + 2].text
        if len(title) <= TITLE_MAX and len(src) <= SOURCE_MAX and len(summary) > len(src):
            return block[:i], block[i:]
    raise IssueParseError(
        f"cannot tell where the intro ends and the first item starts (lines {block[0].no}-"
        f"{url.no}): name the first item's title in the subject line",
        line=block[0].no,
        source=source,
    )


def _refuse_swallowed_items(
    run: list[Line], headlines: set[str], sources: set[str], *, source: str
) -> None:
    """Refuse a summary/closing that visibly holds another item (its URL line is missing)."""
    for j, line in enumerate(run):
        key = fold(line.text)
        if key in headlines and len(run) - j >= 3:
            raise IssueParseError(
                f"{shorten(line.text)!r} is a headline of the subject line, but it sits in "
                "the text of the item above: that item has no URL line",
                line=line.no,
                source=source,
            )
        if j >= 1 and key in sources and len(run) - j >= 2 and len(line.text) <= SOURCE_MAX:
            prev = run[j - 1]
            raise IssueParseError(
                f"lines {prev.no}-{line.no} look like the title and source ({line.text!r}) of "
                "an item, but the item above them has no URL line",
                line=prev.no,
                source=source,
            )


_SENTENCE_END = tuple(".,;:!?\u2026\u3002\uff0c\uff1b\uff1a\uff01\uff1f")
_CLOSERS = "\"'\u201d\u2019)]\u300d\u300f\uff09"


def source_shaped(text: str) -> bool:
    """Short and not ending like a sentence (after closing quotes): a publication's name."""
    return len(text) <= SOURCE_MAX and not text.rstrip(_CLOSERS).endswith(_SENTENCE_END)


def item_head_at(run: list[Line], i: int) -> bool:
    """True when ``run[i:i+3]`` has an item head's shape: title, source, longer summary."""
    if i < 0 or i + 2 >= len(run):
        return False
    title, src, summary = run[i].text, run[i + 1].text, run[i + 2].text
    return len(title) <= TITLE_MAX and source_shaped(src) and len(summary) > len(src)


def _refuse_item_shapes(run: list[Line], *, after_last_url: bool, source: str) -> None:
    """Refuse summary or closing text that holds an item whose URL line is missing."""
    for i in range(len(run) - 2):
        if not item_head_at(run, i):
            continue
        if item_head_at(run, i + 1):
            i += 1  # a short last summary line before the real title also fits: skip it
        title, src = run[i], run[i + 1]
        if after_last_url:
            where = (
                "after the last URL: this item has no URL line (add it after the item's "
                "summary; if this is closing text, end its short lines like sentences or "
                "join them)"
            )
        else:
            where = (
                f"inside the summary of the item above: that item has no URL line (add it "
                f"before line {title.no})"
            )
        raise IssueParseError(
            f"lines {title.no}-{src.no} look like an item's title and source "
            f"({shorten(title.text)!r}, {shorten(src.text)!r}) {where}",
            line=title.no,
            source=source,
        )


def format_brief(issue: Issue, *, blank_lines: bool = False, newline: str = "\n") -> str:
    """Write an Issue in the brief format (what :func:`parse` reads back).

    The date is not written (the format has no date line); it survives only if the intro
    says "Today is <Month D, YYYY>". The brief format needs a preheader (the teaser).
    """
    if not issue.preheader:
        raise ValueError("the brief format needs a preheader: line 2 is the teaser")
    out = [issue.subject.replace("; ", ";"), issue.preheader, *issue.intro]
    for item in issue.items:
        out += [item.title, item.source, *item.paragraphs, item.url]
    out += issue.closing
    sep = newline * 2 if blank_lines else newline
    return sep.join(out) + newline
