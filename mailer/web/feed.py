"""An Atom feed (RFC 4287) of a list's sent issues, built with ElementTree (so every text
is escaped by the XML writer, not by hand)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

ATOM_NS = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True)
class FeedEntry:
    url: str
    title: str
    published: datetime
    updated: datetime
    summary: str
    content_html: str


@dataclass(frozen=True)
class FeedInfo:
    title: str
    feed_url: str
    index_url: str
    author: str
    updated: datetime
    subtitle: str = ""


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
    el.text = text
    return el


def _link(parent: ET.Element, href: str, rel: str, kind: str) -> None:
    ET.SubElement(parent, f"{{{ATOM_NS}}}link", {"rel": rel, "href": href, "type": kind})


def atom_feed(info: FeedInfo, entries: Sequence[FeedEntry]) -> bytes:
    """The feed document, UTF-8 with an XML declaration."""
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _text(feed, "id", info.index_url)
    _text(feed, "title", info.title)
    if info.subtitle:
        _text(feed, "subtitle", info.subtitle)
    updated = max([info.updated, *(e.updated for e in entries)])
    _text(feed, "updated", rfc3339(updated))
    _link(feed, info.feed_url, "self", "application/atom+xml")
    _link(feed, info.index_url, "alternate", "text/html")
    author = ET.SubElement(feed, f"{{{ATOM_NS}}}author")
    _text(author, "name", info.author)
    for e in entries:
        entry = ET.SubElement(feed, f"{{{ATOM_NS}}}entry")
        _text(entry, "id", e.url)
        _text(entry, "title", e.title)
        _text(entry, "published", rfc3339(e.published))
        _text(entry, "updated", rfc3339(e.updated))
        _link(entry, e.url, "alternate", "text/html")
        if e.summary:
            _text(entry, "summary", e.summary)
        if e.content_html:
            _text(entry, "content", e.content_html, type="html")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body
