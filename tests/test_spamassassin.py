"""SpamAssassin (Debian's package, local rules only) scores the rendered issue at 0 points.

The message is the real one: a full-size, 9-item issue in the upstream brief format
(tests/fixtures/issues/brief-full.txt), rendered once and built by the delivery engine's
MIME builder for a reader. ``spamassassin -L -t`` runs only local tests (no DNS or network
checks), so the score is about our HTML and text alone: the seed issue used to get 0.7 for
HTML_FONT_LOW_CONTRAST (a preheader hidden as white text on a light background).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailer.issue.files import parse_issue_file
from mailer.render.compiler import Branding, render_issue
from mailer.render.message import build_preview_message

SPAMASSASSIN = shutil.which("spamassassin")
pytestmark = pytest.mark.skipif(
    SPAMASSASSIN is None, reason="Debian's spamassassin is not installed (scripts/setup --dev)"
)
FULL = Path(__file__).parent / "fixtures" / "issues" / "brief-full.txt"
BASE = "https://northbrief.example.com"
_SCORE = re.compile(r"Content analysis details:\s+\((-?\d+(?:\.\d+)?) points")
_RULE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s+(.*)$", re.MULTILINE)


def score(eml: bytes) -> tuple[float, list[tuple[float, str, str]]]:
    """(total, [(points, rule, description)]) from ``spamassassin -L -t``'s report."""
    assert SPAMASSASSIN is not None
    done = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"], input=eml, capture_output=True, timeout=120, check=False
    )
    report = done.stdout.decode("utf-8", "replace")
    found = _SCORE.search(report)
    assert found, f"no score in spamassassin's output: {report[-2000:]!r} {done.stderr[-500:]!r}"
    details = report[found.end() :]
    rules = [(float(p), name, desc.strip()) for p, name, desc in _RULE.findall(details)]
    return float(found.group(1)), rules


def message(branding: Branding, name: str) -> bytes:
    rendered = render_issue(parse_issue_file(FULL), branding)
    return build_preview_message(
        rendered,
        from_address="The North Brief <news@northbrief.example.com>",
        to="reader@example.org",
        unsubscribe_url=f"{BASE}/unsubscribe/1.2.abcdefghijklmnopqrstuv",
        preferences_url=f"{BASE}/preferences/1.2.abcdefghijklmnopqrstuv",
        list_name="The North Brief",
        list_slug="north",
        name=name,
    )


PLAIN = Branding(
    "The North Brief",
    BASE,
    "The North Brief Ltd\n12 Quay Street\nBristol BS1 4XY",
    archive_url=f"{BASE}/archive/north/0123456789abcdef",
)
BRANDED = Branding(
    "The North Brief",
    BASE,
    "The North Brief Ltd\n12 Quay Street\nBristol BS1 4XY",
    archive_url=f"{BASE}/archive/north/0123456789abcdef",
    logo_url=f"{BASE}/static/logo.png",
    accent_color="#1a5fb4",
    greeting="Dear",
)


@pytest.mark.parametrize(
    ("branding", "name"),
    [(PLAIN, "Ana Lima"), (PLAIN, ""), (BRANDED, "Ana Lima")],
    ids=["default", "nameless-reader", "logo-and-accent"],
)
def test_rendered_issue_scores_zero(branding: Branding, name: str) -> None:
    eml = message(branding, name)
    assert len(eml) > 30_000  # the full-size issue, not a stub
    total, rules = score(eml)
    hit = [f"{p:+.1f} {rule} ({desc})" for p, rule, desc in rules if p != 0]
    assert total <= 0 and not hit, f"SpamAssassin gave {total} points: " + "; ".join(hit)
