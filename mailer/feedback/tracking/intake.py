"""The intake behind ``/r/`` and ``/o/``: hits are queued and written in batches.

The redirect answers before anything is written (:meth:`TrackingIntake.record` only queues
the hit); a :class:`~mailer.feedback.group_commit.GroupWriter` thread writes what waits in
one transaction, so a slow database slows the writing, never the redirect. ``flush`` writes
what is queued (the web app's shutdown calls it, so SIGTERM loses nothing); a crash loses
what was still queued, about one batch when the writer keeps up. At most ``MAX_PENDING`` hits
wait in memory; past that (a database away for long under a flood) new hits are counted,
logged and not kept (``dropped``; ``mailer_tracking_dropped_total`` in /metrics).

A hit waits as a flat tuple of its fields (:func:`flat`), not as a :class:`Hit`: a tuple of
numbers, strings and datetimes is dropped from the cycle collector's lists at its first
collection, so a backlog of 100,000 hits adds nothing to what each later collection walks
(as Hit objects it added 100,000, and a full collection held the GIL, and every request in
flight, for the time it took to walk them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.feedback.group_commit import GroupWriter
from mailer.feedback.tracking.classify import Hit, Thresholds
from mailer.feedback.tracking.store import LinkTables, write_hits

__all__ = ["BATCH", "MAX_PENDING", "TrackingIntake", "flat"]

log = logging.getLogger(__name__)

#: hits written in one transaction at most. A batch reads the clicks of its messages within
#: MAILER_TRACK_BURST_WINDOW back from the database (the burst rule), whatever its size, so
#: under a flood big batches cost the writer, which shares the GIL with the redirect, less
#: per hit: 1024 took ~180 us of CPU a hit where 256 took ~470 (7,500 clicks/s over 200
#: readers' links). While the writer keeps up, batches are small anyway; a crash loses what
#: is queued, one batch or less then.
BATCH = 1024
#: how long a batch waits out a database that is down or locked before it is given up
RETRY_FOR = 300.0
#: hits waiting at most (~300 bytes each): past it, while the database is away and a flood
#: of genuine links goes on, new hits are counted and logged, not kept (the memory of
#: `mailer serve` stays bounded; the redirect itself still answers)
MAX_PENDING = 200_000


#: a Hit's fields in order: what waits in the queue (see the module docstring)
Row = tuple[int, int, "int | None", datetime, str, str, str, "str | None", str]


def flat(hit: Hit) -> Row:
    """The hit as a tuple the cycle collector stops tracking (``Hit(*flat(hit)) == hit``)."""
    return (
        hit.campaign_id,
        hit.delivery_id,
        hit.link,
        hit.at,
        hit.source,
        hit.method,
        hit.user_agent,
        hit.accept_language,
        hit.client_ip,
    )


class TrackingIntake:
    """Queue hits, write them behind in batches; ``links`` are the campaigns' link tables
    (shared with the route that looks up where a click goes)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        links: LinkTables | None = None,
        batch: int = BATCH,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.max_pending = max_pending
        self.dropped = 0  # hits not kept because max_pending were waiting
        self.thresholds = Thresholds.from_settings(settings)
        self.links = links or LinkTables()
        self.writer: GroupWriter[Row, str | None] = GroupWriter(
            sessions,
            self._write,
            # one writer: each batch sees every earlier click committed, so a burst split
            # across batches is still found (_flag_bursts), on every database
            threads=1,
            batch=batch,
            retry_for=RETRY_FOR,
            name="tracking-writer",
            describe=lambda row: f"hit on delivery {row[1]}",
        )

    def _write(self, session: Session, rows: Sequence[Row]) -> list[str | None]:
        return write_hits(session, [Hit(*row) for row in rows], self.thresholds, self.links)

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
        self.writer.put(flat(hit))

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything queued so far; False when ``timeout`` passed first."""
        return self.writer.flush(timeout)
