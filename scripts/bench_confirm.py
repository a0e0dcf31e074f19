#!/usr/bin/env python3
"""Confirmation mails for many readers at once (an import without --confirmed, issue 15).

Times :func:`mailer.sending.reader_mails.confirmation_bodies` for N readers of one list at
one ``now`` (what `mailer subscribers import` does: the HTML compiled once, each reader's
address and link spliced in) against the baseline measured in the same run: the same mail
compiled in full for each reader (MJML + premailer, as before). Goal: >= 5x faster.

    .venv/bin/python scripts/bench_confirm.py [--readers 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailer.config import Settings
from mailer.render.compiler import compile_email
from mailer.sending import reader_mails

GOAL_X = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=300)
    args = parser.parse_args()
    settings = Settings(secret_key="bench-secret-key-4f9c2a7e1b8d6053aa")
    now = datetime.now(UTC)
    mails = [
        reader_mails.ConfirmationMail(
            f"reader{i}@example.org",
            i,
            "The China Brief",
            "Brief <brief@example.org>",
            None,
            f"https://news.example.org/confirm/token-{i}",
            now,
        )
        for i in range(args.readers)
    ]
    reader_mails.confirmation_bodies(mails[0], settings)  # warm the template caches
    started = time.perf_counter()
    for mail in mails:
        reader_mails.confirmation_bodies(mail, settings)
    spliced = (time.perf_counter() - started) / len(mails) * 1000
    full_n = max(20, len(mails) // 10)  # the baseline is slow: a sample is enough
    started = time.perf_counter()
    for mail in mails[:full_n]:
        # the old way: the whole pipeline for each reader's own values
        compile_email(
            reader_mails.CONFIRM_HTML,
            reader_mails.confirmation_context(mail, settings),
            template_dir=settings.template_dir,
        )
    full = (time.perf_counter() - started) / full_n * 1000
    ratio = full / spliced
    print(f"readers {len(mails)}")
    print(f"baseline full compile per reader   {full:.2f} ms/mail")
    print(f"compiled once, spliced per reader  {spliced:.2f} ms/mail")
    print(f"goal >= {GOAL_X:.0f}x faster: {'met' if ratio >= GOAL_X else 'MISSED'} ({ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
