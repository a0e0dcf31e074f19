#!/usr/bin/env python3
"""`mailer send` end to end with default settings (issue 17): from the command's start to its
summary, an issue to N readers (default 20,000) on SQLite, against the SES test server
answering after 20 ms, with no tuning variable set (MAILER_SEND_CONCURRENCY and
MAILER_BATCH_SIZE follow the transport). Goals: >= 1,000 emails/s with SendEmail, >= 8,000/s
with SendBulkEmail.

    .venv/bin/python scripts/bench_send_defaults.py [--readers 20000] [--api bulk] [--runs 3]

``--runs N`` sends N times per API (taking turns, so load on the shared machine falls on
each alike) and reports the median, with every run's figure after it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")

from bench_send import BENCH_KEY, LATENCY, seed  # noqa: E402

from subscribers.db import make_engine  # noqa: E402
from subscribers.migrate import upgrade  # noqa: E402
from tests.delivery_helpers import ISSUE  # noqa: E402
from tests.support.ses_server import SesServerProcess  # noqa: E402

GOALS = {"single": 1_000.0, "bulk": 8_000.0}


def send_rate(api: str, readers: int, server_url: str) -> float:
    """Emails per second of one `mailer send`, process start to exit, on a fresh store."""
    with tempfile.TemporaryDirectory(prefix="bench-defaults-") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(make_engine(url))
        seed(url, readers)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        env.update(
            MAILER_DATABASE_URL=url,
            MAILER_TRANSPORT="ses",
            MAILER_SES_API=api,
            MAILER_SES_ENDPOINT_URL=server_url,
            MAILER_SES_REGION="us-east-1",
            MAILER_SECRET_KEY=BENCH_KEY,
            MAILER_BASE_URL="https://news.example.org",
            MAILER_POSTAL_ADDRESS="1 Example Road, Example City",
        )
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "mailer", "send", str(ISSUE), "--list", "brief"],
            env=env,
            check=True,
            capture_output=True,
            cwd=tmp,
        )
        return readers / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--api", choices=("single", "bulk"), action="append", help="(repeatable)")
    parser.add_argument("--runs", type=int, default=1, help="sends per API; the median counts")
    args = parser.parse_args(argv)
    apis = args.api or ["single", "bulk"]
    rates: dict[str, list[float]] = {api: [] for api in apis}
    with SesServerProcess(latency=LATENCY, max_send_rate=0, keep_raw=False) as server:
        for _ in range(max(1, args.runs)):
            for api in apis:
                rates[api].append(send_rate(api, args.readers, server.url))
    met = True
    for api in apis:
        rate = statistics.median(rates[api])
        ok = rate >= GOALS[api]
        met = met and ok
        each = f" (runs: {', '.join(f'{r:,.0f}' for r in rates[api])})" if args.runs > 1 else ""
        print(
            f"mailer send, defaults, {api} ({args.readers:,} readers): {rate:,.0f} emails/s, "
            f"goal >= {GOALS[api]:,.0f}: {'met' if ok else 'MISSED'}{each}"
        )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
