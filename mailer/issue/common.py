"""Rules both issue formats share: lines, whitespace, URLs, the date, the subject.

Kept apart so the two parsers cannot drift: an issue written in either format must come
out as the same :class:`~mailer.issue.model.Issue`.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailer.errors import IssueParseError

# Line breaks we accept; every other control character is an error (see Line.read).
_NEWLINES = re.compile(r"\r\n|\r|\n")
_SPACES = re.compile(r"[ \t\u2028\u2029]+")
# A line that is one token with a scheme: a URL, or something posing as one.
_URL_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://\S*$")
_BAD_SCHEME_TOKEN = re.compile(r"^(?:javascript|vbscript|data|file|mailto|ftp|ftps):\S*$", re.I)
_MONTHS = {
    name.lower(): n
    for n, names in enumerate(
        [
            ("January", "Jan"),
            ("February", "Feb"),
            ("March", "Mar"),
            ("April", "Apr"),
            ("May",),
            ("June", "Jun"),
            ("July", "Jul"),
            ("August", "Aug"),
            ("September", "Sep", "Sept"),
            ("October", "Oct"),
            ("November", "Nov"),
            ("December", "Dec"),
        ],
        start=1,
    )
    for name in names
}
_TODAY = re.compile(
    r"\btoday is\s+(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day,?\s+)?"
    r"(?P<month>[A-Za-z]+)\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})\b",
    re.IGNORECASE,
)
MAX_URL_CHARS = 4096


@dataclass(frozen=True)
class Line:
    """One non-blank line of the file, whitespace-normalised, with its 1-based number."""

    no: int
    text: str


def detect_format(text: str) -> str:
    """'markdown' when the file opens with YAML front matter, else 'brief'."""
    first = _NEWLINES.split(text.lstrip("\ufeff"), maxsplit=1)[0]
    return "markdown" if first.rstrip() == "---" else "brief"


def split_lines(text: str, *, source: str) -> list[str]:
    """The raw lines (no BOM, any newline convention), checked for control characters."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = _NEWLINES.split(text)
    for no, raw in enumerate(lines, start=1):
        for col, ch in enumerate(raw, start=1):
            if ch == "\t":
                continue
            if unicodedata.category(ch) in ("Cc", "Cs"):
                raise IssueParseError(
                    f"control character U+{ord(ch):04X} at column {col}; remove it",
                    line=no,
                    source=source,
                )
    return lines


def clean(text: str) -> str:
    """Trim, and collapse runs of spaces and tabs to one space (no-break spaces are kept)."""
    return _SPACES.sub(" ", text).strip()


def nonblank_lines(text: str, *, source: str) -> list[Line]:
    """Every non-blank line, cleaned, numbered as in the file."""
    out = []
    for no, raw in enumerate(split_lines(text, source=source), start=1):
        cleaned = clean(raw)
        if cleaned:
            out.append(Line(no, cleaned))
    return out


def is_url_line(text: str) -> bool:
    """True when the whole line is one http(s) URL token."""
    return bool(_URL_TOKEN.match(text)) and text.lower().startswith(("http://", "https://"))


def is_foreign_url_line(text: str) -> bool:
    """True when the whole line is a link with another scheme (ftp://, javascript:, ...)."""
    if is_url_line(text):
        return False
    return bool(_URL_TOKEN.match(text) or _BAD_SCHEME_TOKEN.match(text))


def check_url(url: str, *, line: int, source: str) -> str:
    """Validate an item link and return it without ``utm_*`` parameters."""
    if not url.lower().startswith(("http://", "https://")):
        raise IssueParseError(
            f"link must be an http(s) URL, got {shorten(url)!r}", line=line, source=source
        )
    if len(url) > MAX_URL_CHARS:
        raise IssueParseError(
            f"URL is {len(url)} characters long (at most {MAX_URL_CHARS})", line=line, source=source
        )
    if any(ch.isspace() or ch in '<>"' for ch in url):
        raise IssueParseError(
            f"URL contains a space, quote or angle bracket: {shorten(url)!r}",
            line=line,
            source=source,
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as err:
        raise IssueParseError(
            f"malformed URL {shorten(url)!r}: {err}", line=line, source=source
        ) from err
    if not parts.hostname:
        raise IssueParseError(f"URL has no host: {shorten(url)!r}", line=line, source=source)
    return strip_tracking(url)


def strip_tracking(url: str) -> str:
    """Drop ``utm_*`` query parameters; every other character of the URL stays as given."""
    head, sep, fragment = url.partition("#")
    base, qsep, query = head.partition("?")
    if not qsep:
        return url
    kept = [p for p in query.split("&") if not p.split("=", 1)[0].lower().startswith("utm_")]
    if len(kept) == len(query.split("&")):
        return url
    kept = [p for p in kept if p]
    rebuilt = base + ("?" + "&".join(kept) if kept else "")
    return rebuilt + (sep + fragment if sep else "")


def split_subject(line: str) -> tuple[str, ...]:
    """The headlines of a subject line: split on ';', trimmed, empties dropped."""
    return tuple(h for h in (clean(p) for p in line.split(";")) if h)


def normalise_subject(line: str, *, lineno: int | None, source: str) -> str:
    """The subject as its headlines joined by '; '; an empty one is an error."""
    heads = split_subject(line)
    if not heads:
        raise IssueParseError("the subject is empty", line=lineno, source=source)
    return "; ".join(heads)


def fold(text: str) -> str:
    """Comparison key for headlines: case, quotes and spacing do not matter."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.translate(_QUOTES)
    return clean(text)


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def date_from_intro(paragraphs: list[Line], *, source: str) -> datetime.date | None:
    """The date of a sentence 'Today is January 30, 2025' in the intro, else None."""
    for para in paragraphs:
        m = _TODAY.search(para.text)
        if not m:
            continue
        month = _MONTHS.get(m.group("month").lower())
        if month is None:
            continue
        try:
            return datetime.date(int(m.group("year")), month, int(m.group("day")))
        except ValueError as err:
            raise IssueParseError(
                f"the intro says {m.group(0)!r}, which is not a date", line=para.no, source=source
            ) from err
    return None


def shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
