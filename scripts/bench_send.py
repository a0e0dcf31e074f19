#!/usr/bin/env python3
"""Benchmark of the send path against the SES-compatible test server (20 ms latency, loopback).

Everything is measured in one run, so the figures are ratios against baselines taken on the
same machine at the same time:

* server capacity: the test server's own limit, hammered with one pre-signed request replayed
  over keep-alive connections (almost no client CPU);
* naive baseline: per reader, render the whole issue and build the message with the ``email``
  package, then SendEmail, sequentially;
* the engine end to end (enqueue, claim, personalize, send, record) on SQLite and
  PostgreSQL, with SendEmail and with SendBulkEmail, and SendEmail from two worker processes;
* enqueue of a big list on PostgreSQL (default 1,000,000 readers) and the sender's peak RSS
  on a small and on that big list.

Usage: scripts/bench_send.py [--quick] [--json FILE] [--check]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.update(
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)

from sqlalchemy import text  # noqa: E402

from mailer.config import Settings  # noqa: E402
from subscribers.db import make_engine, session_factory  # noqa: E402
from subscribers.migrate import upgrade  # noqa: E402
from tests.support.scratch import scratch_postgres  # noqa: E402
from tests.support.ses_server import SesServerProcess  # noqa: E402

PG_ADMIN = os.environ.get(
    "MAILER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LATENCY = 0.02
#: real transports refuse a weak key (mailer.config.weak_key_reason)
BENCH_KEY = "bench-secret-key-7d1e0a93c4b2f685"
SEED_SUBSCRIBERS = (
    "INSERT INTO subscribers (email, name, attributes, created_at, updated_at) "
    "SELECT 'reader' || i || '@example.com', 'Reader ' || i, '{{}}', "
    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM ({numbers}) AS numbers"
)
SEED_SUBSCRIPTIONS = (
    "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, confirmed_at) "
    "SELECT id, 1, 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM subscribers"
)


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, migrated database; dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            upgrade(make_engine(url))
            yield url
        return
    with scratch_postgres(PG_ADMIN, "bench_send") as url:
        yield url


def seed(url: str, n: int) -> None:
    """A list 'brief' with n active readers, set-based (fast even for a million)."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    from subscribers import store

    with sessions.begin() as s:
        store.create_list(s, "brief", name="Bench Brief", from_address="Bench <brief@example.org>")
    numbers = (
        "SELECT i FROM generate_series(1, :n) AS g(i)"
        if engine.dialect.name == "postgresql"
        else "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < :n) "
        "SELECT i FROM g"
    )
    with engine.begin() as c:
        c.execute(text(SEED_SUBSCRIBERS.format(numbers=numbers)), {"n": n})
        c.execute(text(SEED_SUBSCRIPTIONS))
        if engine.dialect.name == "postgresql":
            c.execute(text("ANALYZE"))
    engine.dispose()


def make_settings(url: str, server_url: str, api: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": url,
        "transport": "ses",
        "ses_endpoint_url": server_url,
        "ses_region": "us-east-1",
        "ses_api": api,
        # what the README recommends for SES: enough in flight for tens of ms of latency,
        # batches big enough that claiming and recording stay off the critical path
        "send_concurrency": 64 if api == "single" else 48,
        "batch_size": 500 if api == "single" else 4000,
        "secret_key": BENCH_KEY,
    }
    base.update(kw)
    return Settings(**base)


def new_campaign(url: str, settings: Settings) -> int:
    from tests.delivery_helpers import make_campaign

    sessions = session_factory(make_engine(url))
    cid, _, _ = make_campaign(sessions, settings, force=True)
    return cid


def engine_run(url: str, server_url: str, api: str, n: int) -> float:
    """Emails per second, end to end, one process."""
    from mailer.sending.engine import Engine
    from mailer.transports import make_transport

    settings = make_settings(url, server_url, api)
    t0 = time.perf_counter()
    cid = new_campaign(url, settings)  # enqueue counts
    sessions = session_factory(make_engine(url))
    transport = make_transport(settings)
    with Engine(settings, sessions, transport) as engine:
        progress = engine.run(cid)
    transport.close()
    elapsed = time.perf_counter() - t0
    assert progress.sent == n, (progress.sent, n)
    return n / elapsed


def workers_run(url: str, server_url: str, api: str, n: int, workers: int) -> float:
    settings = make_settings(url, server_url, api)
    cid = new_campaign(url, settings)
    env = dict(
        os.environ,
        MAILER_DATABASE_URL=url,
        MAILER_TRANSPORT="ses",
        MAILER_SES_ENDPOINT_URL=server_url,
        MAILER_SES_REGION="us-east-1",
        MAILER_SES_API=api,
        MAILER_SEND_CONCURRENCY=str(settings.send_concurrency),
        MAILER_BATCH_SIZE=str(settings.batch_size),
        MAILER_SECRET_KEY=BENCH_KEY,
    )
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mailer", "worker", "--once"], env=env, stdout=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.wait()
    elapsed = time.perf_counter() - t0
    from mailer.sending import campaigns as camp

    with session_factory(make_engine(url))() as s:
        assert camp.report(s, cid).counts == {"sent": n}
    return n / elapsed


def naive_run(server_url: str, n: int) -> float:
    """Per reader: render the whole template, build the message, SendEmail; sequential."""
    from email.message import EmailMessage

    import boto3

    from mailer.issue.files import parse_issue_file
    from mailer.render.compiler import Branding, render_issue
    from tests.delivery_helpers import ISSUE

    client = boto3.client("sesv2", endpoint_url=server_url, region_name="us-east-1")
    issue = parse_issue_file(ISSUE)
    branding = Branding("Bench Brief", "https://news.example.org", "1 Example Road")
    t0 = time.perf_counter()
    for i in range(n):
        rendered = render_issue(issue, branding)
        html, body = rendered.personalize(
            {"unsubscribe_url": f"https://news.example.org/u/{i}", "preferences_url": "https://x/p"}
        )
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = (
            "brief@example.org",
            f"r{i}@example.com",
            rendered.subject,
        )
        msg.set_content(body)
        msg.add_alternative(html, subtype="html")
        client.send_email(
            FromEmailAddress="brief@example.org",
            Destination={"ToAddresses": [f"r{i}@example.com"]},
            Content={"Raw": {"Data": bytes(msg)}},
        )
    return n / (time.perf_counter() - t0)


def server_capacity(server_url: str, seconds: float = 4.0, connections: int = 64) -> float:
    """Replay one signed SendEmail over keep-alive connections; requests per second."""
    import boto3

    client = boto3.client("sesv2", endpoint_url=server_url, region_name="us-east-1")
    captured: dict[str, Any] = {}

    def grab(request: Any, **_: Any) -> None:
        captured["req"] = request

    client.meta.events.register("before-send.sesv2.SendEmail", grab)
    client.send_email(
        FromEmailAddress="brief@example.org",
        Destination={"ToAddresses": ["cap@example.com"]},
        Content={"Simple": {"Subject": {"Data": "x"}, "Body": {"Text": {"Data": "x" * 2000}}}},
    )
    req = captured["req"]
    host_port = server_url.split("//", 1)[1]
    path = req.url.split(host_port, 1)[1]
    body = req.body if isinstance(req.body, bytes) else req.body.encode()
    headers = {k: v for k, v in req.headers.items()}
    count = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def hammer() -> None:
        conn = http.client.HTTPConnection(host_port, timeout=10)
        done = 0
        while time.perf_counter() < stop:
            conn.request("POST", path, body=body, headers=headers)
            conn.getresponse().read()
            done += 1
        with lock:
            count[0] += done

    threads = [threading.Thread(target=hammer) for _ in range(connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0] / (time.perf_counter() - t0)


def rss_child(url: str, server_url: str, seconds: float) -> float:
    """Peak RSS (MB) of a sender process running the latest campaign for ``seconds``."""
    code = f"""
import os, sys, threading, time
sys.path.insert(0, {str(ROOT)!r})
from mailer.config import Settings
from mailer.sending.engine import Engine
from mailer.transports import make_transport
from subscribers.db import make_engine, session_factory
from mailer.sending import campaigns as camp
s = Settings(database_url={url!r}, transport="ses", ses_endpoint_url={server_url!r},
             ses_region="us-east-1", ses_api="bulk", send_concurrency=48, batch_size=4000,
             secret_key={BENCH_KEY!r})
sessions = session_factory(make_engine(s.database_url))
with sessions() as x:
    cid = camp.latest(x, 1)[0].id
e = Engine(s, sessions, make_transport(s))
threading.Timer({seconds}, e.request_stop).start()
with e:
    e.run(cid)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print(int(line.split()[1]) / 1024)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=600
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--big", type=int, default=1_000_000, help="readers for the enqueue test")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    n_single, n_bulk, n_naive, big = (
        (600, 3000, 20, 50_000) if args.quick else (20_000, 100_000, 100, args.big)
    )
    rows: list[dict[str, Any]] = []

    def row(
        name: str, value: float, unit: str, base: float | None, goal: str, ok: bool | None
    ) -> None:
        rows.append(
            {
                "figure": name,
                "value": round(value, 1),
                "unit": unit,
                "ratio": round(value / base, 2) if base else None,
                "goal": goal,
                "ok": ok,
            }
        )
        ratio = f"{value / base:8.2f}x" if base else "        "
        mark = "" if ok is None else ("PASS" if ok else "MISS")
        print(f"{name:48s} {value:12,.1f} {unit:10s} {ratio} {goal:28s} {mark}", flush=True)

    print(f"load average: {os.getloadavg()}; cores: {os.cpu_count()}")
    with SesServerProcess(latency=LATENCY, max_send_rate=0, keep_raw=False) as server:
        url = server.url
        cap = server_capacity(url)
        row("test server capacity (limit)", cap, "req/s", None, "", None)
        naive = naive_run(url, n_naive)
        row("naive baseline (render+build+send per reader)", naive, "emails/s", None, "", None)
        for backend in ("sqlite", "postgresql"):
            with database(backend) as db:
                seed(db, n_single)
                rate = engine_run(db, url, "single", n_single)
                row(
                    f"engine SendEmail, {backend}, 1 process",
                    rate,
                    "emails/s",
                    naive,
                    ">= 1000/s and >= 20x naive",
                    rate >= 1000 and rate >= 20 * naive,
                )
            with database(backend) as db:
                seed(db, n_bulk)
                rate = engine_run(db, url, "bulk", n_bulk)
                row(
                    f"engine bulk, {backend}, 1 process",
                    rate,
                    "emails/s",
                    naive,
                    ">= 8000/s",
                    rate >= 8000,
                )
        with database("postgresql") as db:
            seed(db, n_single * 2)
            rate = workers_run(db, url, "single", n_single * 2, 2)
            row(
                "engine SendEmail, postgresql, 2 workers",
                rate,
                "emails/s",
                naive,
                ">= 1800/s",
                rate >= 1800,
            )
        with database("postgresql") as db:
            seed(db, 10_000)
            settings = make_settings(db, url, "bulk")
            new_campaign(db, settings)
            small_rss = rss_child(db, url, 5.0)
        with database("postgresql") as db:
            t0 = time.perf_counter()
            seed(db, big)
            seeded = time.perf_counter() - t0
            settings = make_settings(db, url, "bulk")
            t0 = time.perf_counter()
            new_campaign(db, settings)
            enqueue = time.perf_counter() - t0
            row(
                f"enqueue {big:,} readers, postgresql", enqueue, "s", None, "<= 30 s", enqueue <= 30
            )
            row("  (seeding the list, for scale)", seeded, "s", None, "", None)
            big_rss = rss_child(db, url, 5.0)
        row(
            "sender peak RSS, 10,000-reader list",
            small_rss,
            "MB",
            None,
            "< 250 MB",
            small_rss < 250,
        )
        row(
            f"sender peak RSS, {big:,}-reader list",
            big_rss,
            "MB",
            small_rss,
            "< 250 MB, flat (<1.2x)",
            big_rss < 250 and big_rss < 1.2 * small_rss,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    missed = [r["figure"] for r in rows if r["ok"] is False]
    if missed:
        print("missed:", "; ".join(missed))
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
