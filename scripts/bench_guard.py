#!/usr/bin/env python3
"""How much the reputation guard costs the send engine between two batches.

The engine calls ``mailer.sending.guard.check_campaign`` once per claimed batch. This script builds
a campaign of ``--rows`` deliveries (all sent) with SES events for them (``--delivered``
Delivery events, 3% hard bounces, 0.05% complaints; two other campaigns' events are two days
old, as history is) and times:

  baseline   SELECT count(*) of the campaign's rows by status (what the engine's own
             progress query costs, on the same index)
  guard      check_campaign (one statement: sends, hard bounces, complaints since the ack)
  stats      mailer.ops.stats.campaign_stats for the same campaign (the dashboard's numbers)

and prints each as milliseconds per call and as a ratio to the baseline, measured in this
run. Goal: the guard within a small multiple of the baseline, and far under one batch's
send time (200 messages at 14/s is 14 s).

    .venv/bin/python scripts/bench_guard.py [--rows 50000] [--repeat 20]
        [--database-url postgresql://postgres@127.0.0.1/test]

With a PostgreSQL URL it creates a scratch database next to the one named (which is left
alone) and drops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import make_url

from mailer.config import Settings
from mailer.feedback.models import FeedbackEvent
from mailer.ops import stats
from mailer.sending import guard
from mailer.sending.models import Campaign, Delivery
from subscribers.db import make_engine, normalize_url, session_factory
from subscribers.migrate import upgrade
from subscribers.models import MailingList, Subscriber
from tests.support.scratch import scratch_postgres


def seed(sessions, rows: int) -> int:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with sessions.begin() as s:
        mlist = MailingList(
            slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench", from_address="b@x.org"
        )
        s.add(mlist)
        s.flush()
        s.execute(
            insert(Subscriber),
            [{"email": f"r{i}@example.com", "attributes": {}} for i in range(rows)],
        )
        first = s.scalar(select(func.min(Subscriber.id)))
        ids = []
        for n in range(3):  # the measured campaign and two others (noise)
            c = Campaign(
                list_id=mlist.id,
                issue_key=f"k{n}",
                subject="s",
                issue={},
                html="h",
                text="t",
                status="sending",
                archive_html="",
                reclaimed=0,
            )
            s.add(c)
            s.flush()
            ids.append(c.id)
            size = rows if n == 0 else rows // 4
            s.execute(
                insert(Delivery),
                [
                    {
                        "campaign_id": c.id,
                        "subscriber_id": first + i,
                        "status": "sent",
                        "sent_at": now - timedelta(minutes=30),
                        "message_id": f"m{n}-{i}",
                        "attempts": 1,
                    }
                    for i in range(size)
                ],
            )
        s.execute(
            update(Campaign)
            .where(Campaign.id == ids[0])
            .values(started_at=now - timedelta(minutes=35))
        )
        deliveries = s.execute(select(Delivery.id, Delivery.campaign_id)).all()
        events = []
        for j, (did, cid) in enumerate(deliveries):
            # the other campaigns' events are history: received two days ago
            received = now if cid == ids[0] else now - timedelta(days=2)
            kind, bounce = "Delivery", None
            if j % 33 == 0:
                kind, bounce = "Bounce", "Permanent"
            elif j % 2000 == 1:
                kind = "Complaint"
            events.append(
                {
                    "event_hash": uuid.uuid4().hex * 2,
                    "event_type": kind,
                    "bounce_type": bounce,
                    "ses_message_id": f"x{j}",
                    "delivery_id": did,
                    "occurred_at": received,
                    "received_at": received,
                    "raw": {},
                }
            )
        for k in range(0, len(events), 5000):
            s.execute(insert(FeedbackEvent), events[k : k + 5000])
    return ids[0]


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and the statement cache
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    cleanup = contextlib.ExitStack()
    tmp = cleanup.enter_context(tempfile.TemporaryDirectory())
    url = args.database_url or f"sqlite:///{tmp}/bench.db"
    if make_url(normalize_url(url)).get_backend_name() == "postgresql":
        # a database of its own, dropped at the end: never touch the one named
        url = cleanup.enter_context(scratch_postgres(url, "bench_guard", migrate=False))
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    started = time.perf_counter()
    cid = seed(sessions, args.rows)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    print(f"{engine.dialect.name}: {args.rows} rows seeded in {time.perf_counter() - started:.1f}s")
    settings = Settings(database_url=url, guard_min_sample=200)

    with sessions() as s:

        def baseline() -> object:
            return s.execute(
                select(Delivery.status, func.count())
                .where(Delivery.campaign_id == cid)
                .group_by(Delivery.status)
            ).all()

        reason = guard.check_campaign(s, cid, settings)
        sample = guard.sample(s, cid)
        base = timed(baseline, args.repeat)
        g = timed(lambda: guard.check_campaign(s, cid, settings), args.repeat)
        st = timed(lambda: stats.campaign_stats(s, campaign_ids=[cid]), max(3, args.repeat // 4))
    print(
        f"guard sample: {sample.sent} sent, {sample.hard_bounced} hard bounces,"
        f" {sample.complained} complaints"
    )
    print(f"guard verdict: {reason}")
    for name, t in (("baseline", base), ("guard", g), ("stats", st)):
        print(f"{name:9s} {t * 1000:8.2f} ms/call   x{t / base:6.2f} of baseline")
    engine.dispose()
    cleanup.close()


if __name__ == "__main__":
    main()
