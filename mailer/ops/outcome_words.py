"""What the feedback rules did to an event, in words for a person.

The rules record their actions compactly in ``feedback_events.outcome``
(``suppressed:hard_bounce:a@example.com; unsubscribed:1 list(s):a@example.com``): fine for a
machine, raw for /admin's "What we did" and `mailer feedback simulate`. An action this module
does not know is shown as recorded.
"""

from __future__ import annotations

import re

_REASONS = {
    "hard_bounce": "hard bounce",
    "soft_bounce_limit": "too many soft bounces",
    "complaint": "complaint",
}

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^unmatched$"), "matched no delivery"),
    (re.compile(r"^suppressed:(?P<why>[a-z_]+):(?P<who>.+)$"), "suppressed {who} ({why})"),
    (
        re.compile(r"^unsubscribed:(?P<n>\d+) list\(s\):(?P<who>.+)$"),
        "unsubscribed {who} from {n} list(s)",
    ),
    (re.compile(r"^soft:(?P<n>\d+)/(?P<of>\d+):(?P<who>.+)$"), "soft bounce {n} of {of} for {who}"),
    (re.compile(r"^reset:(?P<who>.+)$"), "soft bounces of {who} forgiven (delivered)"),
    (re.compile(r"^ignored:not-spam$"), "ignored (marked not spam)"),
    (re.compile(r"^delivery#(?P<n>\d+):failed$"), "delivery {n} marked failed"),
)


def in_words(outcome: str | None) -> str:
    """``outcome`` as a sentence fragment per action, joined by '; ' ('' for none)."""
    if not outcome:
        return ""
    return "; ".join(_one(part.strip()) for part in outcome.split(";") if part.strip())


def _one(action: str) -> str:
    for pattern, words in _PATTERNS:
        m = pattern.match(action)
        if m:
            found = m.groupdict()
            if "why" in found:
                found["why"] = _REASONS.get(found["why"], found["why"].replace("_", " "))
            return words.format(**found)
    return action
