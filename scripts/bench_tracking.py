#!/usr/bin/env python3
"""The tracked-link redirect under load (issue 16), against a bare 302 in the same run.

Seeds a SQLite store with ``--readers`` readers on a list that tracks clicks and opens,
sends them an issue through the real engine and the outbox, and takes every tracked link
out of the sent messages. Then, one after the other, on one server process each with the
configuration ``mailer serve`` runs (mailer.web.server.server_config):

* baseline: a bare Starlette app whose one route answers 302 (nothing verified, nothing
  recorded), loaded with ``wrk`` on one path;
* the redirect: ``python -m mailer serve``, loaded with ``wrk`` on the readers' links at
  random (verify the token, look up the link, queue the hit, answer 302); then SIGTERM,
  and the events written are counted against the 302s wrk received: none may be lost.

``wrk`` (Debian's package; scripts/setup --dev installs it) is the load generator: it is
written in C and runs in its own process, so it is not the bottleneck that a Python client
would be. Goals: the redirect >= 3,000 requests/s with p99 < 50 ms; the ratio to the bare
302 is printed for scale (both on this machine, in this run).

    .venv/bin/python scripts/bench_tracking.py [--readers 1000] [--seconds 10]
        [--connections 32]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from mailer.config import Settings  # noqa: E402
from mailer.feedback.tracking.models import TrackingEvent  # noqa: E402
from mailer.issue.model import Issue, Item  # noqa: E402
from mailer.web.server import server_config  # noqa: E402
from subscribers import store  # noqa: E402
from subscribers.db import make_engine, session_factory  # noqa: E402
from subscribers.migrate import upgrade  # noqa: E402
from subscribers.tracking import Track, set_tracking  # noqa: E402
from tests.delivery_helpers import seed_list  # noqa: E402
from tests.plugins.mailer_server import free_port, mailer_serve_process  # noqa: E402
from tests.web_support import send_issue  # noqa: E402

GOAL_RPS = 3000.0
GOAL_P99_MS = 50.0
KEY = "bench-tracking-key-5d2c8e1f9a7b3c60"
_PATH = re.compile(r'href="https?://[^/"]+(/r/[^"]+)"')


def bare_app() -> None:
    """``--bare PORT``: a bare 302 on the server configuration mailer serve uses."""

    async def bare(_: Request) -> Response:
        return Response(status_code=302, headers={"Location": "https://example.com/story"})

    app = Starlette(routes=[Route("/r/{token}", bare, methods=["GET", "HEAD"])])
    port = int(sys.argv[sys.argv.index("--bare") + 1])
    uvicorn.Server(server_config(app, Settings(), host="127.0.0.1", port=port)).run()


def issue() -> Issue:
    return Issue(
        subject="Benchmark issue",
        preheader="Five stories",
        date=None,
        intro=("Good morning.",),
        items=tuple(
            Item(f"Story {n}", "Wire", (f"Summary {n}.",), f"https://news.example.net/{n}")
            for n in range(1, 6)
        ),
        closing=("Bye.",),
    )


def seed(tmp: Path, readers: int) -> tuple[Settings, list[str]]:
    """A store with one sent, tracked campaign; the /r/ paths of every message."""
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'bench.db'}",
        secret_key=KEY,
        env="test",
        outbox_dir=tmp / "outbox",
        base_url="http://127.0.0.1:8000",
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    seed_list(sessions, readers)
    with sessions.begin() as s:
        set_tracking(s, store.get_list(s, "brief").id, Track(clicks=True, opens=True))
    cid = send_issue(sessions, settings, issue())
    paths: list[str] = []
    for eml in (settings.outbox_dir / str(cid)).glob("*.eml"):
        text = eml.read_bytes().decode("ascii", "replace").replace("=\r\n", "").replace("=3D", "=")
        paths.extend(dict.fromkeys(_PATH.findall(text)))
    engine.dispose()
    return settings, paths


def lua(paths: list[str], where: Path) -> Path:
    """A wrk script that asks for the paths at random, with a browser's headers."""
    rows = ",\n".join(f'  "{p}"' for p in paths)
    where.write_text(
        f"paths = {{\n{rows}\n}}\n"
        'headers = {["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", '
        '["Accept-Language"] = "en"}\n'
        "request = function()\n"
        '  return wrk.format("GET", paths[math.random(#paths)], headers)\n'
        "end\n",
        encoding="utf-8",
    )
    return where


def wrk(base: str, script: Path, args: argparse.Namespace) -> tuple[float, float, int, int]:
    """(requests/s, p99 ms, requests, non-3xx) from one wrk run."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.seconds}s",
            "--latency",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if args.verbose:
        print(out)
    rps = float(_need(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _need(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    total = int(_need(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, total, int(bad.group(1)) if bad else 0


def _need(pattern: str, out: str) -> re.Match[str]:
    m = re.search(pattern, out)
    if m is None:
        raise ValueError(f"wrk output not understood ({pattern}):\n{out}")
    return m


def wait_for(port: int, path: str, timeout: float = 30.0) -> int:
    """GET ``path`` (redirects not followed) until the server answers; the status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path, headers={"Accept-Language": "en"})
            return conn.getresponse().status
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    raise RuntimeError(f"port {port} did not answer in {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian's 'wrk'; scripts/setup --dev installs it)")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as name:
        tmp = Path(name)
        settings, paths = seed(tmp, args.readers)
        print(
            f"{args.readers} readers, {len(paths)} tracked links (wrk: {args.connections} "
            f"connections, {args.seconds} s)"
        )

        port = free_port()
        bare = subprocess.Popen(
            [sys.executable, __file__, "--bare", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(port, "/r/x")
            b_rps, b_p99, _, _ = wrk(f"http://127.0.0.1:{port}", lua(paths, tmp / "b.lua"), args)
        finally:
            bare.terminate()
            bare.wait(timeout=15)
        print(f"bare 302: {b_rps:,.0f} requests/s, p99 {b_p99:.1f} ms")

        env = {
            **os.environ,
            "MAILER_DATABASE_URL": settings.database_url,
            "MAILER_SECRET_KEY": KEY,
            "MAILER_ENV": "test",
            "MAILER_BASE_URL": "http://127.0.0.1:8000",
        }
        with mailer_serve_process(env, tmp) as (base, proc):
            # the first click reads the campaign's link table; it is a click like the others
            assert wait_for(int(base.rsplit(":", 1)[1]), paths[0]) == 302
            rps, p99, total, bad = wrk(base, lua(paths, tmp / "r.lua"), args)
            proc.terminate()  # SIGTERM mid-stream of writes: the shutdown flushes the queue
            proc.wait(timeout=60)
        engine = make_engine(settings.database_url)
        with session_factory(engine)() as s:
            events = int(s.scalar(select(func.count()).select_from(TrackingEvent)) or 0)
        engine.dispose()
        redirects = total - bad + 1  # the warm-up request was a click too
        print(f"redirect /r/: {rps:,.0f} requests/s, p99 {p99:.1f} ms ({bad} not 302)")
        print(f"redirect vs bare 302: {rps / b_rps:.2f} of its requests/s")
        # a request cut when wrk stops may have been answered and recorded but not counted
        lost = max(0, redirects - events)
        print(f"events written after SIGTERM: {events} of {redirects} redirects (lost {lost})")
        ok_rps, ok_p99 = rps >= GOAL_RPS, p99 < GOAL_P99_MS
        print(f"goal redirect >= {GOAL_RPS:,.0f} requests/s: {'met' if ok_rps else 'MISSED'}")
        print(f"goal redirect p99 < {GOAL_P99_MS:.0f} ms: {'met' if ok_p99 else 'MISSED'}")
        print(f"goal no event lost across SIGTERM: {'met' if not lost else 'MISSED'}")
    return 0 if ok_rps and ok_p99 and not lost else 1


if __name__ == "__main__":
    if "--bare" in sys.argv:
        bare_app()
    else:
        sys.exit(main())
