"""Claims and marks of Delivery rows, on SQLite and PostgreSQL (docs/architecture.md principle 2).

* a claim (``queued -> sending``, with worker id and time) is one statement per batch, in
  the transaction that locked the campaign row; on PostgreSQL ``FOR UPDATE SKIP LOCKED``
  lets any number of workers share a campaign;
* rows a dead worker left ``sending`` (its heartbeat lease expired, or the claim is older
  than ``MAILER_LEASE_SECONDS``) are claimed again and counted in ``Campaign.reclaimed``:
  those, and only those, may have been sent twice;
* fencing (issue 18): a claim records the claiming worker's lease generation in
  ``Delivery.fence``; a worker whose lease lapsed claims nothing until its heartbeat takes
  the lease again (a new generation). The batch's results are written by
  :mod:`mailer.sending.outcomes`, every statement fenced by worker and generation.

The statements here are the hot path's; their shapes (one parameter per array, per-row
index lookups) are what the send benchmarks were tuned on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, or_, select, text, update
from sqlalchemy.orm import Session, load_only

from mailer.sending.leases import live_generation
from mailer.sending.models import Campaign, Delivery, DeliveryStatus, Lease
from mailer.sending.outcomes import ClaimedRow, Fence
from mailer.sending.outcomes import Sent as Sent  # tests read the statement shapes here
from mailer.sending.outcomes import mark_sent as mark_sent
from mailer.sending.report import state_counts as state_counts
from subscribers.db import id_in
from subscribers.models import Subscriber, Subscription, Suppression, UTCDateTime

#: A claim on PostgreSQL in one round trip: lock the next queued rows (skipping rows other
#: workers hold), mark them ours, and return each with its reader and whether the reader is
#: still deliverable (active on the list, not suppressed). Same rules as the portable path:
#: :func:`deliverable` and the queued select in :meth:`Ledger._claim_queued`.
CLAIM_QUEUED_PG = text(
    """
    WITH claimed AS (
        UPDATE deliveries AS d
        SET status = 'sending', worker = :worker, fence = :fence, claimed_at = :now,
            attempts = d.attempts + 1
        WHERE d.id = ANY(ARRAY(
            SELECT id FROM deliveries
            WHERE campaign_id = :campaign_id AND status = 'queued' AND id > :after
              AND (not_before IS NULL OR not_before <= :now)
              AND (release_at IS NULL OR release_at <= :release_now)
            ORDER BY id
            LIMIT :n
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING d.id, d.subscriber_id
    )
    SELECT c.id, c.subscriber_id, s.email, s.name,
           EXISTS (
               SELECT 1 FROM subscriptions AS sub
               WHERE sub.subscriber_id = c.subscriber_id AND sub.list_id = :list_id
                 AND sub.status = 'active'
           )
           AND NOT EXISTS (SELECT 1 FROM suppressions AS sup WHERE sup.email = s.email)
    FROM claimed AS c
    -- per-row index lookups: a plain join let the planner hash whole tables for a batch
    LEFT JOIN LATERAL (
        SELECT email, name FROM subscribers WHERE subscribers.id = c.subscriber_id
    ) AS s ON true
    """
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("release_now", type_=UTCDateTime()))

#: what the engine reads of the campaign row before each claim (not its bodies: tens of kB)
_STATE = (
    Campaign.status,
    Campaign.pause_reason,
    Campaign.expires_at,
    Campaign.started_at,
    Campaign.created_at,
    Campaign.finished_at,
    Campaign.guard_ack_at,
    Campaign.at_local,
    Campaign.wave_expiry,
)
_PACING = (Campaign.rate_cursor, Campaign.reclaimed)

log = logging.getLogger(__name__)

STALE_SCAN_SECONDS = 5.0  # how often a worker looks for rows of dead workers to re-claim


class Reader(NamedTuple):
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class Claim:
    """One batch: its rows, the deliverable readers by subscriber id (a row whose reader is
    missing here is skipped), the pacing clock's time its reserved slot starts, and the
    fencing token its results are written under."""

    rows: list[ClaimedRow]
    readers: dict[int, Reader]
    start_at: float
    fence: Fence


# -- claims --------------------------------------------------------------------------------


def lock_campaign(s: Session, campaign_id: int, sqlite: bool) -> Campaign:
    """The campaign row as a claim judges and paces it (not its bodies), locked on
    PostgreSQL so the pacing cursor and ``reclaimed`` move one claim at a time."""
    query = select(Campaign).where(Campaign.id == campaign_id).options(load_only(*_STATE, *_PACING))
    if not sqlite:
        query = query.with_for_update()
    return s.scalars(query).one()


class Ledger:
    """One worker's claims: where its next claim starts, when it next looks for dead
    workers' rows, and whether its own claims are orphans (after a lost connection)."""

    def __init__(self, worker_id: str, *, sqlite: bool, lease_seconds: float) -> None:
        self.worker_id = worker_id
        self.sqlite = sqlite
        self.lease_seconds = lease_seconds
        self._claim_after: dict[int, int] = {}  # campaign -> highest id this worker claimed
        self._next_stale_scan = 0.0
        self._orphaned_before: datetime | None = None
        self.fence: Fence | None = None  # the last claim's; None: the lease has lapsed

    def orphan_own_claims(self, now: datetime) -> None:
        """The connection was lost mid-run and nothing is in flight any more: rows this
        worker claimed until ``now`` and left ``sending`` (a claim that committed while its
        answer was lost, a sent batch whose results could not be written) are claimed again
        like a dead worker's, and counted. Its later claims are not touched."""
        self._orphaned_before = now
        self._next_stale_scan = 0.0

    def claim(
        self,
        s: Session,
        campaign: Campaign,
        list_id: int,
        size: int,
        now: datetime,
        monotonic: float,
        release_now: datetime | None = None,
    ) -> tuple[list[ClaimedRow], dict[int, Reader]]:
        """Claim up to ``size`` rows of the locked ``campaign``: dead workers' rows first
        (looked for every ``STALE_SCAN_SECONDS`` by the ``monotonic`` clock), then queued
        ones; with the deliverable readers among them. Nothing while this worker's lease
        has lapsed at ``now``: the rows it holds may be another worker's by now, and a
        claim made under a lapsed lease could not be told from theirs (:attr:`fence`).
        ``release_now``: the wall clock waves are released by (``--at-local``; default
        ``now``), injected apart from ``now`` which the leases are judged by."""
        campaign_id = campaign.id
        rows: list[ClaimedRow] = []
        generation = live_generation(s, self.worker_id, now)
        if generation is None:
            if self.fence is not None:
                log.warning(
                    "worker %s: its lease lapsed; no claim until the heartbeat renews it",
                    self.worker_id,
                )
            self.fence = None
            return rows, {}
        self.fence = Fence(self.worker_id, generation)
        if monotonic >= self._next_stale_scan:
            rows = self._stale(s, campaign_id, now, size)
            # leases last tens of seconds: looking for dead workers' rows every few seconds
            # finds them as soon as it matters, without a scan per batch
            self._next_stale_scan = monotonic + STALE_SCAN_SECONDS
            if len(rows) < size:
                self._orphaned_before = None  # all found
        reclaimed = len(rows)
        if rows:
            self._mark_claimed(s, [r.delivery_id for r in rows], now)
        lookup = list(rows)  # re-claimed rows: their readers are looked up below
        readers: dict[int, Reader] = {}
        if len(rows) < size:
            # from just past this worker's last claim: a scan from the start walked past
            # every row already sent (O(n) per claim); once that runs dry, from the start
            # (rows retried later, or left by other workers)
            after = self._claim_after.get(campaign_id, 0)
            for since in (after, 0) if after else (0,):
                fresh, found = self._claim_queued(
                    s, campaign_id, list_id, now, size - len(rows), since, release_now or now
                )
                rows += fresh
                if found is None:
                    lookup += fresh
                else:
                    readers.update(found)
                if fresh:
                    self._claim_after[campaign_id] = max(
                        self._claim_after.get(campaign_id, 0), max(r.delivery_id for r in fresh)
                    )
                if len(rows) >= size:
                    break
        if not rows:
            return rows, readers
        subscriber_ids = [int(r.subscriber_id) for r in lookup if r.subscriber_id is not None]
        if subscriber_ids:
            readers.update(deliverable(s, list_id, subscriber_ids))
        if reclaimed:
            campaign.reclaimed = Campaign.reclaimed + reclaimed
        return rows, readers

    def _claim_queued(
        self,
        s: Session,
        campaign_id: int,
        list_id: int,
        now: datetime,
        n: int,
        after: int,
        release_now: datetime,
    ) -> tuple[list[ClaimedRow], dict[int, Reader] | None]:
        """Claim up to ``n`` released queued rows with ids above ``after``, in id order; with
        the readers found deliverable on PostgreSQL (one statement), None (not looked up) on
        SQLite."""
        if not self.sqlite:
            params = {
                "campaign_id": campaign_id,
                "list_id": list_id,
                "now": now,
                "release_now": release_now,
                "n": n,
                "after": after,
                "worker": self.worker_id,
                "fence": self._generation(),
            }
            rows = s.connection().execute(CLAIM_QUEUED_PG, params).all()
            found = sorted(rows, key=lambda r: int(r[0]))
            readers = {r[1]: Reader(r[2], r[3] or "") for r in found if r[4]}
            return [ClaimedRow(r[0], r[1]) for r in found], readers
        queued = (
            select(Delivery.id, Delivery.subscriber_id)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == DeliveryStatus.QUEUED,
                Delivery.id > after,
                or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
                or_(Delivery.release_at.is_(None), Delivery.release_at <= release_now),
            )
            .order_by(Delivery.id)
            .limit(n)
        )
        fresh = [ClaimedRow(r[0], r[1]) for r in s.connection().execute(queued)]
        if fresh:
            self._mark_claimed(s, [r.delivery_id for r in fresh], now)
        return fresh, None

    def _mark_claimed(self, s: Session, ids: list[int], now: datetime) -> None:
        s.connection().execute(  # Core: no ORM session to keep in step with the rows
            update(Delivery)
            .where(id_in(Delivery.id, ids, s))
            .values(
                status=DeliveryStatus.SENDING,
                worker=self.worker_id,
                fence=self._generation(),
                claimed_at=now,
                attempts=Delivery.attempts + 1,
            )
        )

    def _generation(self) -> int:
        assert self.fence is not None, "claims are made under a live lease only"
        return self.fence.generation

    def _stale(self, s: Session, campaign_id: int, now: datetime, size: int) -> list[ClaimedRow]:
        """`sending` rows whose worker is gone (lease expired) or whose claim is too old;
        after a lost connection also this worker's own (see :meth:`orphan_own_claims`)."""
        live = select(Lease.holder).where(Lease.name.like("worker:%"), Lease.expires_at > now)
        gone = [
            Delivery.claimed_at < now - timedelta(seconds=self.lease_seconds),
            Delivery.worker.not_in(live),
        ]
        if self._orphaned_before is not None:
            mine = (Delivery.worker == self.worker_id) & (
                Delivery.claimed_at <= self._orphaned_before
            )
            gone.append(mine)
        q = (
            select(Delivery.id, Delivery.subscriber_id)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == DeliveryStatus.SENDING,
                or_(*gone),
            )
            .order_by(Delivery.id)
            .limit(size)
        )
        if not self.sqlite:
            q = q.with_for_update(skip_locked=True)
        return [ClaimedRow(r[0], r[1]) for r in s.connection().execute(q)]


def deliverable(s: Session, list_id: int, subscriber_ids: list[int]) -> dict[int, Reader]:
    """Claimed readers still deliverable now: active on the list and not suppressed. The
    claim's reads and writes go through the session's connection (Core): an ORM-enabled
    execute added its row loading to every claimed row."""
    if not subscriber_ids:
        return {}
    rows = s.connection().execute(  # Core rows: no ORM loading per reader
        select(Subscriber.id, Subscriber.email, Subscriber.name)
        .join(
            Subscription,
            (Subscription.subscriber_id == Subscriber.id) & (Subscription.list_id == list_id),
        )
        .outerjoin(Suppression, Suppression.email == Subscriber.email)
        .where(
            id_in(Subscriber.id, subscriber_ids, s),
            Subscription.status == "active",
            Suppression.id.is_(None),
        )
    )
    return {sid: Reader(email, name or "") for sid, email, name in rows}
