#!/usr/bin/env python3
"""Reader pages while forged SNS messages name slow certificate hosts (issue 13, item 6).

A server process runs the app exactly as ``mailer serve`` does (mailer.web.server), except
that its SNS certificate fetcher (the injectable seam) fetches URLs of SNS's form from a
local host that answers each request only after ``--delay`` seconds (``--silent``: never).
This process measures ``GET /subscribe/<list>``, one request started every 20 ms whether or
not the earlier ones have answered (so a stall shows in every request it delays), first with
nothing else going on, then while ``--forgeries`` well-formed SNS messages, each naming a
certificate URL never seen before, are posted to ``/webhooks/ses`` all at once (the
measurement starts once their certificates are being fetched and ends before they are all
answered).

Printed: the p95 of both runs and their ratio; the goal is a p95 under load below 200 ms.

    .venv/bin/python scripts/bench_web.py [--forgeries 60] [--pages 200] [--delay 1.5]
        [--silent]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from mailer.config import Settings  # noqa: E402
from mailer.feedback.sns import SNSVerifier  # noqa: E402
from mailer.web.app import create_app  # noqa: E402
from mailer.web.server import serve  # noqa: E402
from subscribers import store  # noqa: E402
from subscribers.db import make_engine, session_factory  # noqa: E402
from subscribers.migrate import upgrade  # noqa: E402
from tests.plugins.mailer_server import free_port  # noqa: E402
from tests.plugins.sns_certs import TOPIC_ARN, SNSSigner, make_certificate  # noqa: E402
from tests.support.web_edges import (  # noqa: E402
    SlowHost,
    forged_notification,
    p95,
    page_times,
    rewriting_fetcher,
)

GOAL_MS = 200.0
INTERVAL = 0.02  # one page request started every 20 ms, answered or not (open loop)


def settings_for(database_url: str, port: int) -> Settings:
    return Settings(
        database_url=database_url,
        env="test",
        secret_key="bench-web",
        base_url=f"http://127.0.0.1:{port}",
        sns_topic_arns=(TOPIC_ARN,),
    )


def run_server(database_url: str, port: int, cert_host: str) -> None:
    """The child: the app as `mailer serve` runs it, certificates fetched from cert_host."""
    settings = settings_for(database_url, port)
    verifier = SNSVerifier(settings, fetch_cert=rewriting_fetcher(cert_host))
    serve(create_app(settings, sns_verifier=verifier), settings, host="127.0.0.1", port=port)


def wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become healthy")


def forgeries(count: int) -> list[dict[str, Any]]:
    """``count`` forged messages, signed before the clock starts (RSA is not cheap)."""
    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = SNSSigner(key, make_certificate(key, now - timedelta(days=1), now + timedelta(1)))
    return [forged_notification(signer) for _ in range(count)]


def post_all(base: str, bodies: list[dict[str, Any]], answers: Counter[int]) -> None:
    """Every forged message at once, one connection each."""

    async def go() -> None:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            responses = await asyncio.gather(
                *(client.post("/webhooks/ses", json=b) for b in bodies)
            )
        answers.update(r.status_code for r in responses)

    asyncio.run(go())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forgeries", type=int, default=60)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--delay", type=float, default=1.5, help="certificate host delay (s)")
    parser.add_argument("--silent", action="store_true", help="the certificate host never answers")
    parser.add_argument("--serve", nargs=3, metavar=("DB", "PORT", "CERT_HOST"), help="(child)")
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0

    with (
        tempfile.TemporaryDirectory(prefix="bench-web-") as tmp,
        SlowHost(None if args.silent else args.delay) as slow,
    ):
        database_url = f"sqlite:///{Path(tmp) / 'web.db'}"
        engine = make_engine(database_url)
        upgrade(engine)
        with session_factory(engine).begin() as session:
            store.create_list(session, "bench", name="Bench", from_address="b@example.org")
        engine.dispose()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - closed after the child
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", database_url, str(port), slow.url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(base, proc)
            page = f"{base}/subscribe/bench"
            page_times(page, 20, INTERVAL)  # warm-up
            unloaded = page_times(page, args.pages, INTERVAL)
            answers: Counter[int] = Counter()
            bodies = forgeries(args.forgeries)
            flood = threading.Thread(target=post_all, args=(base, bodies, answers))
            flood.start()
            deadline = time.monotonic() + 30
            while slow.active == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            loaded = page_times(page, args.pages, INTERVAL)
            overlapped = flood.is_alive() and slow.active > 0
            flood.join()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()

    host = "silent" if args.silent else f"answering after {args.delay:g}s"
    p0, p1 = p95(unloaded) * 1000, p95(loaded) * 1000
    print(
        f"reader page under {args.forgeries} concurrent forged SNS messages "
        f"(certificate host {host})"
    )
    print(f"reader page p95 unloaded:    {p0:8.1f} ms ({args.pages} requests)")
    print(f"reader page p95 under load:  {p1:8.1f} ms ({args.pages} requests)")
    print(f"p95 under load / unloaded:   {p1 / p0:8.2f}x")
    print(f"load overlapped the whole measurement: {'yes' if overlapped else 'NO'}")
    print(f"forged messages answered: {sum(answers.values())} {dict(sorted(answers.items()))}")
    print(f"certificate fetches: {slow.requests} ({slow.max_active} at most at once)")
    met = p1 < GOAL_MS and overlapped and set(answers) <= {403, 503}
    met = met and sum(answers.values()) == args.forgeries
    print(f"goal p95 under load < {GOAL_MS:.0f} ms: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
