"""What a send run reports after each batch and returns at the end: counts, rate, status.

Its own module because the entrances read it (the CLI's progress bar, ``publish``'s
outcome) without needing the engine's threads and database loop. Between two written
batches it also counts each message the transport answered (:meth:`Progress.answer`, in
memory only: no database write per message), so a bar advances per message, not per batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from mailer.errors import RetryableSendError
from mailer.sending.outcomes import Outcome, Tally


@dataclass
class Progress:
    """What the engine reports after each batch (and returns at the end); ``unwritten``
    and :attr:`advanced`, what it reports after each answered message."""

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

    #: answers that settle their row (sent, or failed for good), counted per message as the
    #: transport gives them, whose batch is not written yet
    unwritten: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped

    @property
    def advanced(self) -> int:
        """Readers done as a progress bar shows them: written, and answered but not yet
        written (a retried row counts again when it is answered for good)."""
        return self.done + self.unwritten

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0

    def answer(
        self, outcomes: Iterable[Outcome], listener: Callable[[Progress], None] | None
    ) -> None:
        """One transport call's answers (on a send thread): each that settles its row
        advances the count by one and tells ``listener``, once per message. The lock is
        taken once per call, not per message (a bulk call answers 50)."""
        settled = sum(map(settles, outcomes))
        if not settled:
            return
        if listener is None:
            with self._lock:
                self.unwritten += settled
            return
        for _ in range(settled):  # the bar moves one message at a time
            with self._lock:
                self.unwritten += 1
            listener(self)

    def add(self, tally: Tally, answered: int = 0) -> None:
        """A written batch; ``answered``: how many of its answers :meth:`answer` counted."""
        with self._lock:
            self.unwritten -= answered
            self.sent += tally.sent
            self.failed += tally.failed
            self.skipped += tally.skipped
            self.retried += tally.retried
            self.fenced += tally.rejected


def settles(outcome: Outcome) -> bool:
    """An answer that ends its row's turn: sent, or failed for good (not a retry, and not
    a message the run stopped before sending)."""
    result = outcome.result
    return result is not None and not isinstance(result.error, RetryableSendError)
