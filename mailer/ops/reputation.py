"""How bad a bounce or complaint rate is, judged against the limits the mailbox world sets.

SES reviews an account at a 5% bounce rate and pauses it at 10%; at 0.1% complaints it
reviews, at 0.5% it pauses; Gmail wants spam complaints under 0.1% and never at 0.3%. The
limits live here once, so ``mailer stats``, ``/admin`` and ``/metrics`` judge alike.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BOUNCE_THRESHOLDS",
    "COMPLAINT_THRESHOLDS",
    "Level",
    "RateCheck",
    "Threshold",
    "check_rate",
]


class Level(enum.IntEnum):
    """How bad a rate is; ordered so ``max()`` gives the worst."""

    NA = 0  # nothing sent: no rate
    OK = 1
    WARN = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return {0: "n/a", 1: "ok", 2: "warn", 3: "critical"}[self.value]


@dataclass(frozen=True)
class Threshold:
    """A published limit: at or above ``limit`` the rate is at ``level``."""

    source: str
    limit: float
    level: Level


BOUNCE_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("SES review", 0.05, Level.WARN),
    Threshold("SES pause", 0.10, Level.CRITICAL),
)
COMPLAINT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("Gmail target", 0.001, Level.WARN),
    Threshold("SES review", 0.001, Level.WARN),
    Threshold("Gmail never", 0.003, Level.CRITICAL),
    Threshold("SES pause", 0.005, Level.CRITICAL),
)


@dataclass(frozen=True)
class RateCheck:
    """One rate and what it crossed."""

    name: str  # "bounce" | "complaint"
    rate: float | None
    level: Level
    crossed: tuple[Threshold, ...]
    thresholds: tuple[Threshold, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rate": self.rate,
            "level": self.level.label,
            "crossed": [t.source for t in self.crossed],
            "thresholds": {t.source: t.limit for t in self.thresholds},
        }


def check_rate(name: str, rate: float | None, thresholds: tuple[Threshold, ...]) -> RateCheck:
    """Judge ``rate`` (None: nothing sent) against ``thresholds``."""
    if rate is None:
        return RateCheck(name, None, Level.NA, (), thresholds)
    crossed = tuple(t for t in thresholds if rate >= t.limit)
    level = max((t.level for t in crossed), default=Level.OK)
    return RateCheck(name, rate, level, crossed, thresholds)
