"""Compile once, personalize cheaply: how much cheaper, measured in one run.

Prints the time to render one issue once (the whole pipeline: Jinja -> MJML -> premailer,
plus the text part and the web edition), the time to render the email for one reader the
naive way (the same pipeline with the reader's values written in), and the mean time to
personalize one reader from the rendered issue, with the ratio between the last two.

Goals: personalize <= 100 microseconds per reader, and >= 50x faster than a full render
per reader. ``--check`` exits 1 when a goal is missed; without it the script only reports.

    .venv/bin/python scripts/bench_render.py [--issue FILE] [--readers N] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from mailer.issue.files import parse_issue_file
from mailer.render.compiler import Branding, render_bodies, render_issue

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ISSUE = ROOT / "tests" / "fixtures" / "issues" / "brief-basic.txt"
GOAL_PERSONALIZE_US = 100.0
GOAL_RATIO = 50.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issue", type=Path, default=DEFAULT_ISSUE, help="issue file to render")
    parser.add_argument("--readers", type=int, default=20_000, help="personalize iterations")
    parser.add_argument("--renders", type=int, default=5, help="full renders to time")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args(argv)

    issue = parse_issue_file(args.issue)
    branding = Branding(
        newsletter_name="The Harbour Dispatch",
        base_url="https://dispatch.example",
        postal_address="Harbour Dispatch Ltd, 12 Quay Street, Bristol BS1 4XY",
        archive_url="https://dispatch.example/archive/bench",
    )

    start = time.perf_counter()
    rendered = render_issue(issue, branding)  # first call: imports, template compilation
    cold = time.perf_counter() - start
    once = _median_seconds(lambda: render_issue(issue, branding), args.renders)

    readers = [
        {
            "unsubscribe_url": f"https://dispatch.example/unsubscribe/{n:08d}.{'t' * 80}",
            "preferences_url": f"https://dispatch.example/preferences/{n:08d}.{'p' * 80}",
            "name": f"Reader <{n}> & Co",
        }
        for n in range(args.readers)
    ]
    full = _median_seconds(lambda: render_bodies(issue, branding, readers[0]), args.renders)

    personalize = rendered.personalize
    rendered.personalize(readers[0])  # warm the cached split
    start = time.perf_counter_ns()
    for values in readers:
        personalize(values)
    per_reader = (time.perf_counter_ns() - start) / len(readers) / 1e9

    ratio = full / per_reader
    html_kb = len(rendered.html.encode("utf-8")) / 1024
    print(f"issue: {args.issue.name} ({len(issue.items)} items, HTML {html_kb:.1f} KB)")
    print(f"render once (first call, cold):       {cold * 1e3:9.1f} ms")
    print(f"render once (median of {args.renders}):           {once * 1e3:9.1f} ms")
    print(f"full render per reader (median of {args.renders}): {full * 1e3:9.1f} ms")
    print(f"personalize per reader (mean of {args.readers}): {per_reader * 1e6:9.1f} us")
    print(f"personalize vs full render per reader: {ratio:,.0f}x faster")
    ok_time = per_reader * 1e6 <= GOAL_PERSONALIZE_US
    ok_ratio = ratio >= GOAL_RATIO
    print(f"goal personalize <= {GOAL_PERSONALIZE_US:.0f} us: {'met' if ok_time else 'MISSED'}")
    print(f"goal >= {GOAL_RATIO:.0f}x faster than full render: {'met' if ok_ratio else 'MISSED'}")
    if args.check and not (ok_time and ok_ratio):
        return 1
    return 0


def _median_seconds(fn: object, n: int) -> float:
    assert callable(fn)
    samples = []
    for _ in range(max(1, n)):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


if __name__ == "__main__":
    sys.exit(main())
