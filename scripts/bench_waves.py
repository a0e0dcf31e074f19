#!/usr/bin/env python3
"""Benchmark of ``mailer send --at-local`` (issue 15, "their morning") on PostgreSQL.

One list of 1,000,000 readers (default) with time zones spread over 30 IANA zones (one reader
in 31 without one: the list's zone), in one database, measured in one run:

* the plain enqueue of the list (every row at once), before and after the wave enqueue, so
  the wave figure sits between two baselines of the same table's state;
* the wave enqueue (``--at-local 06:00``): the distinct zones, a release per zone, one
  INSERT ... SELECT with a CASE over the zones; goal <= 30 s;
* a claim of one batch (500 rows) of the first wave against one of the plain campaign;
* what a worker pays between waves: ``runnable()`` and ``next_release()``.

Usage: scripts/bench_waves.py [--readers N]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_send import BENCH_KEY, database, seed  # noqa: E402
from sqlalchemy import select, text  # noqa: E402

from mailer.config import Settings  # noqa: E402
from mailer.sending import campaigns, publish  # noqa: E402
from mailer.sending.leases import beat  # noqa: E402
from mailer.sending.ledger import Ledger, lock_campaign  # noqa: E402
from mailer.sending.models import Campaign  # noqa: E402
from mailer.sending.schedule import Schedule  # noqa: E402
from mailer.sending.waves import next_release  # noqa: E402
from subscribers import store  # noqa: E402
from subscribers.db import make_engine, session_factory  # noqa: E402
from subscribers.models import utcnow  # noqa: E402
from tests.delivery_helpers import fixture_issue  # noqa: E402

ZONES = [
    "Pacific/Auckland", "Australia/Sydney", "Asia/Tokyo", "Asia/Seoul", "Asia/Shanghai",
    "Asia/Singapore", "Asia/Bangkok", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Dubai",
    "Europe/Moscow", "Africa/Nairobi", "Europe/Athens", "Europe/Berlin", "Europe/Paris",
    "Europe/London", "Atlantic/Azores", "America/Sao_Paulo", "America/St_Johns",
    "America/Halifax", "America/New_York", "America/Chicago", "America/Denver",
    "America/Phoenix", "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu",
    "Asia/Jakarta", "Africa/Lagos", "Asia/Karachi",
]  # fmt: skip
BATCH = 500


def spread_zones(url: str) -> None:
    """Reader i gets ZONES[i % 31], the 31st being none (the list's zone)."""
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(
            text("UPDATE subscribers SET time_zone = (CAST(:zones AS text[]))[id % 31 + 1]"),
            {"zones": ZONES},  # index 31 is past the array's end: NULL
        )
        c.execute(text("UPDATE mailing_lists SET time_zone = 'Europe/Berlin'"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE subscribers"))  # the UPDATE's dead rows: gone for both
    engine.dispose()


def create(url: str, schedule: Schedule) -> tuple[int, float]:
    """A campaign of the fixture issue to the list, as `mailer send` creates it: (id, s)."""
    sessions = session_factory(make_engine(url))
    settings = Settings(database_url=url, secret_key=BENCH_KEY)
    issue = fixture_issue()
    with sessions() as s:
        mlist = store.get_list(s, "brief")
    rendered = publish.render_for(settings, mlist, issue)
    t0 = time.perf_counter()
    created = publish.create(sessions, mlist, issue, rendered, schedule)
    return created.campaign_id, time.perf_counter() - t0


def claim_ms(url: str, campaign_id: int, list_id: int, rounds: int = 10) -> float:
    """Median ms of a claim of BATCH rows, the release clock at the campaign's first wave."""
    sessions = session_factory(make_engine(url))
    ledger = Ledger("bench:1:0001", sqlite=False, lease_seconds=600)
    with sessions.begin() as s:
        beat(s, ledger.worker_id)
        first = s.scalar(select(Campaign.scheduled_at).where(Campaign.id == campaign_id))
    wall = (first or utcnow()) + timedelta(seconds=1)
    times = []
    for _ in range(rounds):
        with sessions.begin() as s:
            t0 = time.perf_counter()
            campaign = lock_campaign(s, campaign_id, False)
            rows, _ = ledger.claim(s, campaign, list_id, BATCH, utcnow(), 0.0, release_now=wall)
            if len(rows) < BATCH:  # the wave ran dry (a small --readers)
                break
            times.append((time.perf_counter() - t0) * 1000)
    assert times, "no full batch was released"
    return sorted(times)[len(times) // 2]


def between_waves_ms(url: str, campaign_id: int) -> tuple[float, float]:
    """ms of runnable() and next_release() with the campaign waiting for its next wave."""
    sessions = session_factory(make_engine(url))
    with sessions.begin() as s:
        first = s.scalar(select(Campaign.scheduled_at).where(Campaign.id == campaign_id))
        assert first is not None
        s.execute(
            text("UPDATE campaigns SET status = 'sending' WHERE id = :id"), {"id": campaign_id}
        )
        s.execute(  # the first wave (and the claims above): sent
            text(
                "UPDATE deliveries SET status = 'sent' WHERE campaign_id = :id"
                " AND (status = 'sending' OR release_at <= :first)"
            ),
            {"id": campaign_id, "first": first},
        )
    at = first + timedelta(seconds=1)
    times: dict[str, list[float]] = {"runnable": [], "next_release": []}
    with sessions() as s:
        # the first call after the bulk UPDATE above visits the rows it left dead (hint
        # bits); a worker polls every few seconds: the median of 5 is its steady cost
        for _ in range(5):
            t0 = time.perf_counter()
            due = campaigns.runnable(s, at)
            times["runnable"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            after = next_release(s, campaign_id, at)
            times["next_release"].append((time.perf_counter() - t0) * 1000)
    runnable, wait = (sorted(v)[2] for v in times.values())
    assert campaign_id not in due and after is not None and after > first, (due, after)
    return runnable, wait


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.readers
    with database("postgresql") as url:
        t0 = time.perf_counter()
        seed(url, n)
        spread_zones(url)
        print(f"seeding {n:,} readers in {len(ZONES)} zones: {time.perf_counter() - t0:.1f} s")
        plain_id, plain = create(url, Schedule(force=True))
        wave_id, waves = create(url, Schedule(force=True, at_local="06:00"))
        with make_engine(url).begin() as c:  # started: a scheduled one refuses another send
            c.execute(
                text("UPDATE campaigns SET status = 'sending' WHERE id = :id"), {"id": wave_id}
            )
        _, plain_again = create(url, Schedule(force=True))
        base = (plain + plain_again) / 2
        print(f"plain enqueue, {n:,} readers: {plain:.1f} s, after the waves {plain_again:.1f} s")
        print(
            f"waves enqueue (--at-local), {n:,} readers in {len(ZONES) + 1} zones: {waves:.1f} s,"
            f" {waves / base:.2f}x the plain one; goal <= 30 s: "
            + ("met" if waves <= 30 else "MISSED")
        )
        with session_factory(make_engine(url))() as s:
            list_id = store.get_list(s, "brief").id
        wave_claim = claim_ms(url, wave_id, list_id)
        plain_claim = claim_ms(url, plain_id, list_id)
        print(
            f"claim of {BATCH} rows: {wave_claim:.1f} ms in the first wave, "
            f"{plain_claim:.1f} ms plain ({wave_claim / plain_claim:.2f}x)"
        )
        runnable, wait = between_waves_ms(url, wave_id)
        print(f"between waves: runnable() {runnable:.1f} ms, next_release() {wait:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
