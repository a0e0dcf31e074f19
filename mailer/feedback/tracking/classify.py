"""People or machines: the verdict on one click or open, with the reason
(docs/architecture.md principle 12: reports count people and show machines apart, nothing
is thrown away).

What we see of a hit is its request (method, User-Agent, Accept-Language, client address)
and when it came relative to the message's sending. The rules, first the ones that make a
``proxy`` (opens only: the fetch tells nothing about a person), then ``machine``:

* proxy: Apple Mail Privacy Protection (a bare ``Mozilla/5.0`` user agent, or an address in
  Apple's 17.0.0.0/8), Gmail's ``GoogleImageProxy``, Yahoo's ``YahooMailProxy``;
* machine: the hidden trap link; a ``HEAD`` request; a known scanner or library user agent;
  no user agent; a click without ``Accept-Language`` (every browser sends one); a click
  sooner than ``MAILER_TRACK_MIN_DELAY`` after sending; and, decided by the intake with the
  other clicks of the message at hand, a burst over ``MAILER_TRACK_BURST_LINKS`` links
  within ``MAILER_TRACK_BURST_WINDOW``, or twice that many clicks on any (a replayed link).

Every machine reason that applies is kept, joined with ``; ``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mailer.config import Settings
from mailer.feedback.tracking.models import HUMAN, MACHINE, PROXY

__all__ = ["Hit", "Thresholds", "burst_reason", "classify", "in_bursts"]

#: lowercase pieces of user agents that belong to link scanners, previewers and libraries
SCANNER_AGENTS: tuple[str, ...] = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "safelinks",
    "messagelabs",
    "symantec",
    "trendmicro",
    "bitdefender",
    "forcepoint",
    "fortiguard",
    "sophos",
    "ironport",
    "zscaler",
    "urlscan",
    "virustotal",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "curl/",
    "wget/",
    "go-http-client",
    "okhttp",
    "java/",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
    "facebookexternalhit",
    "slackbot",
    "bot/",
    "bot;",
    "crawler",
    "spider",
    "scanner",
)
_APPLE_NET = ipaddress.ip_network("17.0.0.0/8")
_PROXIES = (("googleimageproxy", "Gmail image proxy"), ("yahoomailproxy", "Yahoo mail proxy"))


@dataclass(frozen=True, slots=True)
class Hit:
    """One click or open as the intake takes it in (a request to /r/ or /o/, or an SES
    open/click event); ``link`` is None for an open."""

    campaign_id: int
    delivery_id: int
    link: int | None
    at: datetime
    source: str = "redirect"  # redirect | pixel | ses
    method: str = "GET"
    user_agent: str = ""
    accept_language: str | None = None  # None: not known (SES events)
    client_ip: str = ""


@dataclass(frozen=True, slots=True)
class Thresholds:
    min_delay: float = 10.0
    burst_window: float = 2.0
    burst_links: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            settings.track_min_delay, settings.track_burst_window, settings.track_burst_links
        )


_SCANNER = re.compile("|".join(re.escape(piece) for piece in SCANNER_AGENTS))


def _scanner(agent: str) -> str | None:
    m = _SCANNER.search(agent.lower())  # one scan in C (the writer shares the GIL)
    return m.group(0).strip("/;") if m else None


def _apple_address(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in _APPLE_NET


def _proxy(hit: Hit) -> str | None:
    agent = hit.user_agent.strip()
    if agent == "Mozilla/5.0":
        return "Apple Mail Privacy Protection (bare Mozilla/5.0 user agent)"
    if hit.client_ip and _apple_address(hit.client_ip):
        return "Apple Mail Privacy Protection (Apple address)"
    low = agent.lower()
    return next((name for piece, name in _PROXIES if piece in low), None)


def classify(
    hit: Hit, *, sent_at: datetime | None, trap: bool, thresholds: Thresholds
) -> tuple[str, str]:
    """(verdict, reason) for one hit; the burst rule is the intake's (:func:`burst_reason`)."""
    reasons: list[str] = []
    if trap:
        reasons.append("hidden trap link")
    if hit.method.upper() == "HEAD":
        reasons.append("HEAD request")
    if hit.link is None and not reasons:
        proxy = _proxy(hit)
        if proxy is not None:
            return PROXY, proxy
    agent = hit.user_agent.strip()
    scanner = _scanner(agent) if agent else None
    if not agent:
        reasons.append("no User-Agent")
    elif scanner is not None:
        reasons.append(f"scanner user agent ({scanner})")
    if hit.link is not None:
        if hit.accept_language is not None and not hit.accept_language.strip():
            reasons.append("no Accept-Language")
        if sent_at is not None:
            after = (hit.at - sent_at).total_seconds()
            if after < thresholds.min_delay:
                reasons.append(
                    f"{max(0.0, after):.1f} s after sending "
                    f"(MAILER_TRACK_MIN_DELAY {thresholds.min_delay:g} s)"
                )
    if reasons:
        return MACHINE, "; ".join(reasons)[:200]
    return HUMAN, ""


def in_bursts(
    clicks: Sequence[tuple[datetime, int]], links_in_message: int, thresholds: Thresholds
) -> set[int]:
    """Positions in ``clicks`` (one message's clicks as ``(at, link)``, the trap left out)
    that belong to a burst: within ``burst_window`` seconds, clicks on ``burst_links``
    different links (at most every link of the message, at least two), or a flood of
    ``2 x burst_links`` clicks on any (one link replayed)."""
    need = max(2, min(thresholds.burst_links, links_in_message))
    flood = 2 * thresholds.burst_links
    order = sorted(range(len(clicks)), key=lambda n: clicks[n])
    found: set[int] = set()
    start = 0
    for end in range(len(order)):
        first = clicks[order[start]][0]
        while (clicks[order[end]][0] - first).total_seconds() > thresholds.burst_window:
            start += 1
            first = clicks[order[start]][0]
        window = order[start : end + 1]
        if len(window) >= flood or len({clicks[n][1] for n in window}) >= need:
            found.update(window)
    return found


def burst_reason(clicks: int, links: int, thresholds: Thresholds) -> str:
    """The reason kept with each click of a burst: ``clicks`` on ``links`` different links."""
    return (
        f"burst: {clicks} clicks on {links} links within {thresholds.burst_window:g} s "
        "(MAILER_TRACK_BURST_WINDOW)"
    )
