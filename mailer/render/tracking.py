"""Tracked links: a campaign's link table, its HTML rewritten once, tokens per reader.

Compile once, personalize cheaply (docs/architecture.md principle 1). When a list tracks, the send
engine rewrites the campaign's HTML once (:func:`rewrite`): every ``href`` that is one of
the issue's item links becomes ``{base}/r/{campaign}.%%track%%.{link}.{link signature}``,
a hidden trap link and (for opens) a 1x1 pixel ``{base}/o/{campaign}.%%track%%.{open
signature}`` go before ``</body>``. Per reader only ``%%track%%`` is filled:
``{delivery}.{delivery signature}`` (one HMAC, :func:`reader_track`).

A click token ``c.d.SIGd.i.SIGi`` is genuine when ``SIGd`` signs ``t.c.d`` and ``SIGi``
signs ``r.c.i`` (hex numbers, canonical spelling only), with the current or an old key
(``Signer.check``). So the tokens accepted for a delivery are exactly the links of its own
message: a forged, truncated or altered token, or one spliced from another reader's, is
refused (the route answers 404). The token names no URL: the redirect target is looked up
by link index in the campaign's link table (:func:`link_table`, from the campaign's stored
issue), so no token can send anyone to a URL that is not in the issue.

The plain-text part is left alone: its links stay the original URLs. Archive, web
edition, test sends and system mails never pass through :func:`rewrite`.
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mailer.errors import TokenError
from mailer.render.placeholders import TRACK_FIELD, placeholder
from mailer.render.tokens import Signer

__all__ = [
    "URL_SAFE",
    "Link",
    "TrackedToken",
    "link_table",
    "reader_track",
    "rewrite",
    "verify_click",
    "verify_open",
]

_HEX = r"(0|[1-9a-f][0-9a-f]{0,15})"
_SIG = r"([A-Za-z0-9_-]{21}[AQgw])"
_CLICK = re.compile(rf"{_HEX}\.{_HEX}\.{_SIG}\.{_HEX}\.{_SIG}")
_OPEN = re.compile(rf"{_HEX}\.{_HEX}\.{_SIG}\.{_SIG}")
_MAX_TOKEN = 120
_HREF = re.compile(r'href="([^"]*)"')
URL_SAFE = ":/%#?=@[]!$&'()*+,;~"
"""What stays as it is when a URL is made one ASCII header line or compared with an href."""
_TRACK = placeholder(TRACK_FIELD)
#: What the trap looks like: hidden from people (and screen readers), a link to any robot.
_TRAP = (
    '<a href="{url}" tabindex="-1" aria-hidden="true" style="display:none;font-size:0;'
    'line-height:0;max-height:0;overflow:hidden;mso-hide:all">&#8203;</a>'
)
_PIXEL = (
    '<img src="{url}" width="1" height="1" alt="" aria-hidden="true" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">'
)


@dataclass(frozen=True, slots=True)
class Link:
    """One entry of a campaign's link table; ``trap`` is the hidden link (no URL)."""

    index: int
    url: str
    title: str
    trap: bool = False


@dataclass(frozen=True, slots=True)
class TrackedToken:
    """What a genuine tracking token says; ``link`` is None for an open."""

    campaign_id: int
    delivery_id: int
    link: int | None


def link_table(issue: Mapping[str, Any]) -> tuple[Link, ...]:
    """The campaign's links from its stored issue (``Campaign.issue``): each item URL once,
    in order (a headline index pointing at the same story counts as that story), then the
    trap. The same issue always gives the same table, so it is never stored apart."""
    seen: dict[str, int] = {}
    links: list[Link] = []
    for item in issue.get("items", ()):
        url, title = str(item.get("url", "")), str(item.get("title", ""))
        if url and url not in seen:
            seen[url] = len(links)
            links.append(Link(len(links), url, title))
    links.append(Link(len(links), "", "(hidden trap link)", trap=True))
    return tuple(links)


def _payload_delivery(campaign_id: int, delivery_id: int) -> str:
    return f"t.{campaign_id:x}.{delivery_id:x}"


def _payload_link(campaign_id: int, link: int) -> str:
    return f"r.{campaign_id:x}.{link:x}"


def _payload_open(campaign_id: int) -> str:
    return f"o.{campaign_id:x}"


def reader_track(signer: Signer, campaign_id: int, delivery_id: int) -> str:
    """The value of ``%%track%%`` for one reader: ``{delivery}.{signature}`` (hex id)."""
    return f"{delivery_id:x}.{signer.mac(_payload_delivery(campaign_id, delivery_id))}"


def rewrite(
    html: str,
    links: Sequence[Link],
    *,
    base_url: str,
    campaign_id: int,
    signer: Signer,
    clicks: bool,
    opens: bool,
) -> str:
    """The campaign's HTML with tracked item links, the trap and the pixel (see the module
    docstring); the same HTML when neither is tracked. Content that spelled ``%%track%%``
    was neutralised by the renderer already."""
    if not (clicks or opens):
        return html
    base = base_url.rstrip("/")
    prefix = f"{campaign_id:x}.{_TRACK}"
    out = html
    tail = ""
    if clicks:
        index = {link.url: link for link in links if not link.trap}
        # the HTML serializer may percent-encode a URL's non-ASCII letters and spaces
        index.update({_quoted(link.url): link for link in links if not link.trap})
        urls = {
            link.index: f"{base}/r/{prefix}.{link.index:x}."
            + signer.mac(_payload_link(campaign_id, link.index))
            for link in links
        }

        def swap(m: re.Match[str]) -> str:
            href = htmlmod.unescape(m.group(1))
            link = index.get(href) or index.get(_quoted(href))
            return m.group(0) if link is None else f'href="{urls[link.index]}"'

        out = _HREF.sub(swap, out)
        trap = next((link for link in links if link.trap), None)
        if trap is not None:
            tail += _TRAP.format(url=urls[trap.index])
    if opens:
        tail += _PIXEL.format(url=f"{base}/o/{prefix}.{signer.mac(_payload_open(campaign_id))}")
    at = out.rfind("</body>")
    return out + tail if at < 0 else out[:at] + tail + out[at:]


def _quoted(url: str) -> str:
    """``url`` with everything but ASCII's URL characters percent-encoded (what Starlette's
    RedirectResponse and browsers send), to compare a URL with its serialized href."""
    return quote(url, safe=URL_SAFE)


def _number(text: str) -> int:
    return int(text, 16)


def verify_click(signer: Signer, token: str) -> TrackedToken:
    """The click a genuine ``/r/`` token names, or TokenError (malformed or forged)."""
    m = _CLICK.fullmatch(token) if len(token) <= _MAX_TOKEN else None
    if m is None:
        raise TokenError("malformed token")
    campaign, delivery, sig_d, link, sig_l = m.groups()
    c, d, i = _number(campaign), _number(delivery), _number(link)
    if not (
        signer.check(_payload_delivery(c, d), sig_d) and signer.check(_payload_link(c, i), sig_l)
    ):
        raise TokenError("bad token signature")
    return TrackedToken(c, d, i)


def verify_open(signer: Signer, token: str) -> TrackedToken:
    """The open a genuine ``/o/`` token names, or TokenError (malformed or forged)."""
    m = _OPEN.fullmatch(token) if len(token) <= _MAX_TOKEN else None
    if m is None:
        raise TokenError("malformed token")
    campaign, delivery, sig_d, sig_o = m.groups()
    c, d = _number(campaign), _number(delivery)
    if not (signer.check(_payload_delivery(c, d), sig_d) and signer.check(_payload_open(c), sig_o)):
        raise TokenError("bad token signature")
    return TrackedToken(c, d, None)
