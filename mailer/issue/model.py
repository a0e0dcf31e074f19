"""An issue of the newsletter, and reading one from the file an editor hands us.

Two input formats produce the same :class:`Issue`; each is documented in its own module:

* the upstream *brief* format (``mailer.issue.brief``), a line-oriented plain-text
  file: subject, teaser, intro, then title / source / summary / URL per item, then closing;
* *Markdown* with YAML front matter (``mailer.issue.markdown``) for hand-written
  issues.

``fmt=None`` auto-detects: a first line of ``---`` (YAML front matter) means Markdown,
anything else is the brief format. Both formats share these rules
(``mailer.issue.common``):

* the file is UTF-8, with or without a BOM; CRLF, CR, trailing spaces, blank lines and a
  missing final newline are all fine; control characters are rejected;
* the subject is normalised to its headlines joined by ``"; "``;
* item links must be absolute http(s) URLs; ``utm_*`` tracking parameters are removed
  (they describe the upstream's feed, not our readers), every other byte of the URL is
  kept as given;
* the date comes from the front matter, else from an intro sentence
  "Today is <Month D, YYYY>", else it is None.

Every problem is an :class:`~mailer.errors.IssueParseError` naming the line; nothing else
escapes the parser, whatever the input.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailer.errors import InputError

__all__ = ["Issue", "Item"]

SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class Item:
    """One story: its headline, where it comes from, the summary, and the link to read it."""

    title: str
    source: str
    paragraphs: tuple[str, ...]
    url: str

    def __post_init__(self) -> None:
        for name in ("title", "source", "url"):
            _check_line(f"item {name}", getattr(self, name), required=True)
        _check_texts("item paragraphs", self.paragraphs)
        if not self.paragraphs:
            raise InputError(f"item {self.title!r} has no summary paragraph")
        if not self.url.lower().startswith(("http://", "https://")):
            raise InputError(f"item {self.title!r}: link is not http(s): {self.url!r}")


@dataclass(frozen=True)
class Issue:
    """One issue: what the renderer needs, and what a campaign snapshots."""

    subject: str
    preheader: str
    date: datetime.date | None
    intro: tuple[str, ...]
    items: tuple[Item, ...]
    closing: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_line("subject", self.subject, required=True)
        _check_line("preheader", self.preheader, required=False)
        if self.date is not None and (
            not isinstance(self.date, datetime.date) or isinstance(self.date, datetime.datetime)
        ):
            raise InputError(f"issue date must be a date, not {type(self.date).__name__}")
        _check_texts("intro", self.intro)
        _check_texts("closing", self.closing)
        if not isinstance(self.items, tuple) or not all(isinstance(i, Item) for i in self.items):
            raise InputError("issue items must be a tuple of Item")
        if not self.items:
            raise InputError("an issue needs at least one item")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe snapshot; :meth:`from_dict` gives back an equal Issue."""
        return {
            "version": SNAPSHOT_VERSION,
            "subject": self.subject,
            "preheader": self.preheader,
            "date": self.date.isoformat() if self.date else None,
            "intro": list(self.intro),
            "items": [
                {
                    "title": it.title,
                    "source": it.source,
                    "paragraphs": list(it.paragraphs),
                    "url": it.url,
                }
                for it in self.items
            ],
            "closing": list(self.closing),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Issue:
        """Rebuild a snapshot made by :meth:`to_dict`; a malformed one raises InputError."""
        if not isinstance(d, Mapping):
            raise InputError("issue snapshot: expected a JSON object")
        version = d.get("version", SNAPSHOT_VERSION)
        if version != SNAPSHOT_VERSION:
            raise InputError(f"issue snapshot: unsupported version {version!r}")
        raw_date = d.get("date")
        date: datetime.date | None = None
        if raw_date is not None:
            if not isinstance(raw_date, str):
                raise InputError("issue snapshot: date must be YYYY-MM-DD text or null")
            try:
                date = datetime.date.fromisoformat(raw_date)
            except ValueError as err:
                raise InputError(f"issue snapshot: bad date {raw_date!r}") from err
        raw_items = d.get("items")
        if not isinstance(raw_items, list):
            raise InputError("issue snapshot: items must be a list")
        items = []
        for n, raw in enumerate(raw_items):
            if not isinstance(raw, Mapping):
                raise InputError(f"issue snapshot: items[{n}] must be an object")
            items.append(
                Item(
                    title=_snap_str(raw, "title", f"items[{n}]"),
                    source=_snap_str(raw, "source", f"items[{n}]"),
                    paragraphs=_snap_strs(raw, "paragraphs", f"items[{n}]"),
                    url=_snap_str(raw, "url", f"items[{n}]"),
                )
            )
        return cls(
            subject=_snap_str(d, "subject", "issue"),
            preheader=_snap_str(d, "preheader", "issue"),
            date=date,
            intro=_snap_strs(d, "intro", "issue"),
            items=tuple(items),
            closing=_snap_strs(d, "closing", "issue"),
        )

    def canonical_json(self) -> str:
        """The snapshot as compact, key-sorted JSON: the same issue, the same string."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def key(self) -> str:
        """sha256 hex of :meth:`canonical_json`: a stable identity for dedup and archive URLs.

        It covers what is sent, and only that. A Markdown file's ``list:`` is not part of
        the Issue, so not of its key: it says where the issue goes, not what it says. That is
        harmless because a campaign is per list (``uq_campaigns_live_issue``: list, key,
        generation): the same issue to two lists is two campaigns, and to one list twice a
        repeat whatever each file's ``list:`` says (tests/test_issue_key_list.py)."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


# -- validation helpers ---------------------------------------------------------------


def _has_control(s: str) -> bool:
    """Line breaks, C0/C1 controls and lone surrogates (which cannot be encoded)."""
    return any(
        (ord(c) < 32 and c != "\t") or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in s
    )


def _check_line(what: str, value: object, *, required: bool) -> None:
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, not {type(value).__name__}")
    if required and not value.strip():
        raise InputError(f"{what} is empty")
    if _has_control(value):
        raise InputError(f"{what} contains a line break or control character: {value!r}")


def _check_texts(what: str, values: object) -> None:
    if not isinstance(values, tuple) or not all(isinstance(v, str) for v in values):
        raise InputError(f"{what} must be a tuple of text")
    for v in values:
        if not v.strip():
            raise InputError(f"{what} holds an empty paragraph")
        if _has_control(v):
            raise InputError(f"{what} holds a control character: {v[:40]!r}")


def _snap_str(d: Mapping[str, Any], key: str, where: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise InputError(f"issue snapshot: {where}.{key} must be text")
    return value


def _snap_strs(d: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = d.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"issue snapshot: {where}.{key} must be a list of text")
    return tuple(value)
