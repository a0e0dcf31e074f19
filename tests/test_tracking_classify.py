"""The people-or-machines rules (issue 16) one by one, and the burst finder against a
brute-force reading of its definition (hypothesis)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.config import Settings
from mailer.feedback.tracking.classify import Hit, Thresholds, classify, in_bursts

SENT = datetime(2026, 5, 14, 6, 0, tzinfo=UTC)
LATER = SENT + timedelta(minutes=30)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
T = Thresholds(min_delay=10, burst_window=2, burst_links=3)


BASE = Hit(1, 1, 0, LATER, user_agent=CHROME, accept_language="en-GB")


def click(**changes: Any) -> Hit:
    return dataclasses.replace(BASE, **changes)


def verdict(hit: Hit, *, trap: bool = False) -> tuple[str, str]:
    return classify(hit, sent_at=SENT, trap=trap, thresholds=T)


def test_a_person() -> None:
    assert verdict(click()) == ("human", "")
    assert verdict(click(link=None, accept_language="")) == ("human", "")  # opens: no A-L rule


@pytest.mark.parametrize(
    ("hit", "reason"),
    [
        (click(method="HEAD"), "HEAD request"),
        (click(user_agent=""), "no User-Agent"),
        (click(user_agent="Mozilla/5.0 (compatible; Barracuda Sentinel)"), "barracuda"),
        (click(user_agent="python-requests/2.31"), "python-requests"),
        (click(user_agent=CHROME.replace("Chrome", "HeadlessChrome")), "headlesschrome"),
        (click(accept_language=""), "no Accept-Language"),
        (click(at=SENT + timedelta(seconds=3)), "3.0 s after sending"),
        (click(at=SENT - timedelta(seconds=3)), "0.0 s after sending"),  # a clock ahead
    ],
)
def test_each_machine_rule(hit: Hit, reason: str) -> None:
    got = verdict(hit)
    assert got[0] == "machine" and reason in got[1]


def test_the_trap_and_every_reason_kept() -> None:
    assert verdict(click(), trap=True) == ("machine", "hidden trap link")
    v, reason = verdict(click(method="HEAD", user_agent="curl/8", accept_language=""))
    assert v == "machine"
    assert reason.split("; ") == ["HEAD request", "scanner user agent (curl)", "no Accept-Language"]


@pytest.mark.parametrize(
    ("agent", "ip", "reason"),
    [
        ("Mozilla/5.0", "", "bare Mozilla/5.0"),
        (CHROME, "17.58.100.1", "Apple address"),
        (CHROME, "::ffff:17.1.2.3", "Apple address"),
        ("Mozilla/5.0 (via ggpht.com GoogleImageProxy)", "", "Gmail image proxy"),
        ("YahooMailProxy; https://help.yahoo.com", "", "Yahoo mail proxy"),
    ],
)
def test_proxies_fetch_the_pixel(agent: str, ip: str, reason: str) -> None:
    v, why = verdict(click(link=None, user_agent=agent, client_ip=ip))
    assert v == "proxy" and reason in why
    # a proxy's HEAD is a machine's; a click from Apple's network is not a proxy open
    assert verdict(click(link=None, user_agent=agent, client_ip=ip, method="HEAD"))[0] == "machine"
    assert verdict(click(user_agent=agent, client_ip=ip))[0] != "proxy"


def test_an_address_that_is_not_one_is_no_proxy() -> None:
    assert verdict(click(link=None, client_ip="not-an-ip")) == ("human", "")
    assert verdict(click(link=None, client_ip="18.0.0.1")) == ("human", "")


def test_thresholds_from_settings() -> None:
    s = Settings(track_min_delay=30, track_burst_window=5, track_burst_links=4)
    assert Thresholds.from_settings(s) == Thresholds(30, 5, 4)


def _brute(clicks: list[tuple[datetime, int]], links: int) -> set[int]:
    need = max(2, min(T.burst_links, links))
    found: set[int] = set()
    flood = 2 * T.burst_links
    for a in range(len(clicks)):
        window = [
            n
            for n in range(len(clicks))
            if clicks[a][0] <= clicks[n][0] <= clicks[a][0] + timedelta(seconds=T.burst_window)
        ]
        if len(window) >= flood or len({clicks[n][1] for n in window}) >= need:
            found.update(window)
    return found


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20_000), st.integers(0, 5)),  # (ms after LATER, link)
        max_size=12,
    ),
    st.integers(1, 6),
)
def test_in_bursts_is_its_definition(raw: list[tuple[int, int]], links: int) -> None:
    clicks = [(LATER + timedelta(milliseconds=ms), link) for ms, link in raw]
    assert in_bursts(clicks, links, T) == _brute(clicks, links)
