"""What a send run reports after each batch and returns at the end: counts, rate, status.

Its own module because the entrances read it (the CLI's progress bar, ``publish``'s
outcome) without needing the engine's threads and database loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from mailer.sending.outcomes import Tally


@dataclass
class Progress:
    """What the engine reports after each batch (and returns at the end)."""

    campaign_id: int
    total: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    fenced: int = 0  # late results the fence refused (rows re-claimed after a lapse)
    started: float = field(default_factory=time.monotonic)
    status: str = ""
    reason: str | None = None
    #: a wave campaign (``--at-local``) whose run ended between waves: the next release
    next_release: datetime | None = None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0

    def add(self, tally: Tally) -> None:
        self.sent += tally.sent
        self.failed += tally.failed
        self.skipped += tally.skipped
        self.retried += tally.retried
        self.fenced += tally.rejected
