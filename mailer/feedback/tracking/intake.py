"""The intake behind ``/r/`` and ``/o/``: hits are queued and written in batches.

The redirect answers before anything is written (:meth:`TrackingIntake.record` only queues
the hit); a :class:`~mailer.feedback.group_commit.GroupWriter` thread writes what waits in
one transaction, so a slow database slows the writing, never the redirect. ``flush`` writes
what is queued (the web app's shutdown calls it, so SIGTERM loses nothing); a crash loses
what was still queued, about one batch when the writer keeps up. At most ``MAX_PENDING`` hits
wait in memory; past that (a database away for long under a flood) new hits are counted,
logged and not kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.feedback.group_commit import GroupWriter
from mailer.feedback.tracking.classify import Hit, Thresholds
from mailer.feedback.tracking.store import LinkTables, write_hits

__all__ = ["MAX_PENDING", "TrackingIntake"]

log = logging.getLogger(__name__)

#: how long a batch waits out a database that is down or locked before it is given up
RETRY_FOR = 300.0
#: hits waiting at most (~300 bytes each): past it, while the database is away and a flood
#: of genuine links goes on, new hits are counted and logged, not kept (the memory of
#: `mailer serve` stays bounded; the redirect itself still answers)
MAX_PENDING = 200_000


class TrackingIntake:
    """Queue hits, write them behind in batches; ``links`` are the campaigns' link tables
    (shared with the route that looks up where a click goes)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        links: LinkTables | None = None,
        batch: int = 256,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.max_pending = max_pending
        self.dropped = 0  # hits not kept because max_pending were waiting
        self.thresholds = Thresholds.from_settings(settings)
        self.links = links or LinkTables()
        self.writer: GroupWriter[Hit, str | None] = GroupWriter(
            sessions,
            self._write,
            # one writer: each batch sees every earlier click committed, so a burst split
            # across batches is still found (_flag_bursts), on every database
            threads=1,
            batch=batch,
            retry_for=RETRY_FOR,
            name="tracking-writer",
            describe=lambda hit: f"hit on delivery {hit.delivery_id}",
        )

    def _write(self, session: Session, hits: Sequence[Hit]) -> list[str | None]:
        return write_hits(session, hits, self.thresholds, self.links)

    def record(self, hit: Hit) -> None:
        """Queue the hit and return at once (counted, not kept, past ``max_pending``)."""
        if self.writer.pending >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error(
                    "tracking: %d hits waiting for the database; %d not kept so far",
                    self.max_pending,
                    self.dropped,
                )
            return
        self.writer.put(hit)

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything queued so far; False when ``timeout`` passed first."""
        return self.writer.flush(timeout)
