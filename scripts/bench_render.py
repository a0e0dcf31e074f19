"""Compile once, personalize cheaply: how much cheaper, measured in one run.

Prints the time to render one issue once (the whole pipeline: Jinja -> MJML -> premailer,
plus the text part and the web edition), the time to render the email for one reader the
naive way (the same pipeline with the reader's values written in), and the mean time to
personalize one reader from the rendered issue, with the ratio between the last two.

Tracking (issue 16): the same personalize with the campaign's links tracked (each reader's
``%%track%%`` signed and spliced into every link and the pixel), and, for scale, the send
engine's whole per-reader path (``reader_message``: signed links, MIME splice) without and
with tracking, in the same run.

Goals: personalize <= 100 microseconds per reader, and >= 50x faster than a full render
per reader; personalize with tracking <= 20 microseconds per reader. ``--check`` exits 1
when a goal is missed; without it the script only reports.

    .venv/bin/python scripts/bench_render.py [--issue FILE] [--readers N] [--check]
"""

from __future__ import annotations

import argparse
import html as htmlmod
import statistics
import sys
import time
from pathlib import Path

from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue
from mailer.render.compiler import Branding, RenderedIssue, render_bodies, render_issue
from mailer.render.message import MessageTemplate
from mailer.render.placeholders import TRACK_FIELD, splice, split_template
from mailer.render.tokens import Signer
from mailer.render.tracking import link_table, reader_track, rewrite
from mailer.sending.personalize import reader_message

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ISSUE = ROOT / "tests" / "fixtures" / "issues" / "brief-basic.txt"
GOAL_PERSONALIZE_US = 100.0
GOAL_RATIO = 50.0
GOAL_TRACKED_US = 20.0


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
    ok_tracked = _tracking_rows(issue, rendered, branding, readers)
    if args.check and not (ok_time and ok_ratio and ok_tracked):
        return 1
    return 0


def _tracking_rows(
    issue: Issue, rendered: RenderedIssue, branding: Branding, readers: list[dict[str, str]]
) -> bool:
    """Personalize with every link tracked, and the engine's per-reader path without and
    with tracking; True when the tracking goal is met."""
    signer = Signer("bench-key-0123456789abcdef0123456789abcdef")
    html = rewrite(
        rendered.html,
        link_table(issue.to_dict()),
        base_url=branding.base_url,
        campaign_id=42,
        signer=signer,
        clicks=True,
        opens=True,
    )
    html_parts, text_parts = split_template(html), split_template(rendered.text)
    plain_html, _ = rendered.personalize(readers[0])
    start = time.perf_counter_ns()
    names = set(html_parts[1]) | set(text_parts[1])
    for n, values in enumerate(readers):
        # what personalize does (escape, splice html and text), plus the reader's signed part
        plain = {k: values.get(k, "") for k in names}
        escaped = {k: htmlmod.escape(v, quote=True) for k, v in plain.items()}
        escaped[TRACK_FIELD] = reader_track(signer, 42, n)
        splice(*html_parts, escaped)
        splice(*text_parts, plain)
    tracked = (time.perf_counter_ns() - start) / len(readers) / 1e3
    links = html.count(f"/r/{42:x}.")
    print(f"personalize with tracking per reader (mean of {len(readers)}): {tracked:9.1f} us")
    print(f"  ({links} tracked links and a pixel in the HTML; plain {len(plain_html)} bytes)")

    def template(body: str) -> MessageTemplate:
        return MessageTemplate.build(
            campaign_id=42,
            subject=rendered.subject,
            from_address="Dispatch <news@dispatch.example>",
            html=body,
            text=rendered.text,
            list_name="The Harbour Dispatch",
            list_slug="dispatch",
        )

    for label, body, on in (("untracked", rendered.html, False), ("tracked", html, True)):
        built = template(body)
        start = time.perf_counter_ns()
        for n, values in enumerate(readers):
            reader_message(
                built,
                signer,
                branding.base_url,
                list_id=1,
                subscriber_id=n,
                delivery_id=n,
                email=f"reader{n}@example.com",
                name=values["name"],
                tracked=on,
            )
        per = (time.perf_counter_ns() - start) / len(readers) / 1e3
        print(f"engine per-reader message, {label} (mean of {len(readers)}): {per:9.1f} us")
    ok = tracked <= GOAL_TRACKED_US
    print(
        f"goal personalize with tracking <= {GOAL_TRACKED_US:.0f} us: {'met' if ok else 'MISSED'}"
    )
    return ok


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
