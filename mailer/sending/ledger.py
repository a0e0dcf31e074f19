"""Claims and marks of Delivery rows, on SQLite and PostgreSQL (docs/architecture.md principle 2).

* a claim (``queued -> sending``, with worker id and time) is one statement per batch, in
  the transaction that locked the campaign row; on PostgreSQL ``FOR UPDATE SKIP LOCKED``
  lets any number of workers share a campaign;
* rows a dead worker left ``sending`` (its heartbeat lease expired, or the claim is older
  than ``MAILER_LEASE_SECONDS``) are claimed again and counted in ``Campaign.reclaimed``:
  those, and only those, may have been sent twice;
* a batch's results are written in one transaction: sent rows with their message ids in one
  statement, the rest one executemany per kind;
* fencing (issue 18): a claim records the claiming worker's lease generation in
  ``Delivery.fence``, and every write of its results has ``worker``, ``fence`` and
  ``status = 'sending'`` in its WHERE clause. A worker whose lease lapsed claims nothing
  until its heartbeat takes the lease again (a new generation); its late results over rows
  another worker claimed again meanwhile change nothing, and are counted
  (``Tally.rejected``, ``Progress.fenced``) and logged.

The statements here are the hot path's; their shapes (one parameter per array, per-row
index lookups) are what the send benchmarks were tuned on.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Text,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, load_only

from mailer.errors import RejectedError, RetryableSendError, TransportError
from mailer.sending.leases import live_generation
from mailer.sending.models import Campaign, Delivery, DeliveryStatus, Lease
from mailer.transports.base import SendResult
from subscribers.db import id_in, is_sqlite
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
).bindparams(bindparam("now", type_=UTCDateTime()))

#: what the engine reads of the campaign row before each claim (not its bodies: tens of kB)
_STATE = (
    Campaign.status,
    Campaign.pause_reason,
    Campaign.expires_at,
    Campaign.started_at,
    Campaign.created_at,
    Campaign.finished_at,
    Campaign.guard_ack_at,
)
_PACING = (Campaign.rate_cursor, Campaign.reclaimed)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
STALE_SCAN_SECONDS = 5.0  # how often a worker looks for rows of dead workers to re-claim
NOT_DELIVERABLE = "unsubscribed, suppressed or erased since the campaign was queued"


class ClaimedRow(NamedTuple):
    delivery_id: int
    subscriber_id: int | None  # None: the reader was erased


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


class Fence(NamedTuple):
    """Whose claim a row is: the worker and its lease's generation when it claimed."""

    worker: str
    generation: int


class Outcome(NamedTuple):
    delivery_id: int
    result: SendResult | None  # None: not attempted (stopped before the call)


class Sent(NamedTuple):
    delivery_id: int
    message_id: str | None


class Failure(NamedTuple):
    delivery_id: int
    error_class: str
    error: str


class Retry(NamedTuple):
    delivery_id: int
    not_before: datetime
    error: str


@dataclass(slots=True)
class Results:
    """A batch's outcomes sorted by what becomes of their rows."""

    sent: list[Sent] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    retryable: list[Retry] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)  # never attempted: back to the queue
    skipped: list[int] = field(default_factory=list)  # reader no longer deliverable
    throttled: bool = False

    @classmethod
    def of(cls, rows: list[ClaimedRow], outcomes: list[Outcome], now: datetime) -> Results:
        """Sorted once, outside the write's retry loop; ``now`` dates the retries."""
        out = cls()
        for o in outcomes:
            if o.result is None:
                out.unsent.append(o.delivery_id)
            elif o.result.ok:
                out.sent.append(Sent(o.delivery_id, o.result.message_id))
            elif isinstance(o.result.error, RetryableSendError):
                err = o.result.error
                out.throttled = out.throttled or err.throttled
                at = now + timedelta(seconds=_backoff(err))
                out.retryable.append(
                    Retry(o.delivery_id, at, f"{type(err).__name__}: {err}"[:2000])
                )
            else:
                bad: TransportError = o.result.error or RejectedError("unknown error")
                out.failed.append(Failure(o.delivery_id, type(bad).__name__, str(bad)[:2000]))
        attempted = {o.delivery_id for o in outcomes}
        out.skipped = [r.delivery_id for r in rows if r.delivery_id not in attempted]
        return out

    @property
    def ids(self) -> list[int]:
        return [
            *(r.delivery_id for r in self.sent),
            *(f.delivery_id for f in self.failed),
            *(r.delivery_id for r in self.retryable),
            *self.unsent,
            *self.skipped,
        ]

    def only(self, ids: set[int]) -> Results:
        """These results without the rows not in ``ids`` (the fence refused them)."""
        return Results(
            sent=[r for r in self.sent if r.delivery_id in ids],
            failed=[f for f in self.failed if f.delivery_id in ids],
            retryable=[r for r in self.retryable if r.delivery_id in ids],
            unsent=[i for i in self.unsent if i in ids],
            skipped=[i for i in self.skipped if i in ids],
            throttled=self.throttled,
        )


class Tally(NamedTuple):
    """What a written batch adds to the campaign's progress."""

    sent: int
    failed: int
    skipped: int
    retried: int
    rejected: int = 0  # results refused by the fence: the rows were claimed again elsewhere


def _backoff(err: RetryableSendError) -> float:
    base = 2.0 if err.throttled else 1.0
    return base + random.uniform(0, base)  # jittered; attempts spread the rest


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
    ) -> tuple[list[ClaimedRow], dict[int, Reader]]:
        """Claim up to ``size`` rows of the locked ``campaign``: dead workers' rows first
        (looked for every ``STALE_SCAN_SECONDS`` by the ``monotonic`` clock), then queued
        ones; with the deliverable readers among them. Nothing while this worker's lease
        has lapsed at ``now``: the rows it holds may be another worker's by now, and a
        claim made under a lapsed lease could not be told from theirs (:attr:`fence`)."""
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
                    s, campaign_id, list_id, now, size - len(rows), since
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
        self, s: Session, campaign_id: int, list_id: int, now: datetime, n: int, after: int
    ) -> tuple[list[ClaimedRow], dict[int, Reader] | None]:
        """Claim up to ``n`` queued rows with ids above ``after``, in id order; with the
        readers found deliverable on PostgreSQL (one statement), None (not looked up) on
        SQLite."""
        if not self.sqlite:
            params = {
                "campaign_id": campaign_id,
                "list_id": list_id,
                "now": now,
                "n": n,
                "after": after,
                "worker": self.worker_id,
                "fence": self._generation(),
            }
            found = sorted(s.execute(CLAIM_QUEUED_PG, params).all(), key=lambda r: int(r[0]))
            readers = {r[1]: Reader(r[2], r[3] or "") for r in found if r[4]}
            return [ClaimedRow(r[0], r[1]) for r in found], readers
        queued = (
            select(Delivery.id, Delivery.subscriber_id)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == DeliveryStatus.QUEUED,
                Delivery.id > after,
                or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
            )
            .order_by(Delivery.id)
            .limit(n)
        )
        fresh = [ClaimedRow(r[0], r[1]) for r in s.execute(queued)]
        if fresh:
            self._mark_claimed(s, [r.delivery_id for r in fresh], now)
        return fresh, None

    def _mark_claimed(self, s: Session, ids: list[int], now: datetime) -> None:
        s.execute(
            update(Delivery)
            .where(id_in(Delivery.id, ids, s))
            .values(
                status=DeliveryStatus.SENDING,
                worker=self.worker_id,
                fence=self._generation(),
                claimed_at=now,
                attempts=Delivery.attempts + 1,
            )
            .execution_options(synchronize_session=False)
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
        return [ClaimedRow(r[0], r[1]) for r in s.execute(q)]


def deliverable(s: Session, list_id: int, subscriber_ids: list[int]) -> dict[int, Reader]:
    """Claimed readers still deliverable now: active on the list and not suppressed."""
    if not subscriber_ids:
        return {}
    rows = s.execute(
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


# -- results -------------------------------------------------------------------------------


def record(conn: Connection, results: Results, now: datetime, fence: Fence) -> Tally:
    """Write a batch's results (Core: one statement per kind for the whole batch), each
    statement fenced: only rows still ``sending`` under this claim's worker and generation
    change. The rows the fence refuses (claimed again by another worker after this one's
    lease lapsed) are counted in ``Tally.rejected`` and logged. Retries past
    ``MAX_ATTEMPTS`` fail instead."""
    asked = results.ids
    held = _still_held(conn, asked, fence)
    rejected = len(asked) - len(held)
    if rejected:
        log.warning(
            "worker %s (lease generation %d): %d late results rejected by the fence; "
            "their rows were claimed again after its lease lapsed",
            fence.worker,
            fence.generation,
            rejected,
        )
        results = results.only(held)
    attempts = _attempts(conn, [r.delivery_id for r in results.retryable])
    retries = [r for r in results.retryable if attempts.get(r.delivery_id, 0) < MAX_ATTEMPTS]
    exhausted = [
        Failure(r.delivery_id, "RetryableSendError", r.error)
        for r in results.retryable
        if attempts.get(r.delivery_id, 0) >= MAX_ATTEMPTS
    ]
    failed = results.failed + exhausted
    mark_sent(conn, results.sent, now, fence)
    _update_claimed(
        conn,
        fence,
        [{"b_id": f.delivery_id, "b_cls": f.error_class, "b_err": f.error} for f in failed],
        status=DeliveryStatus.FAILED,
        error_class=bindparam("b_cls"),
        error=bindparam("b_err"),
    )
    # never attempted (stopped first): not an attempt either
    _update_claimed(
        conn,
        fence,
        [{"b_id": i} for i in results.unsent],
        status=DeliveryStatus.QUEUED,
        attempts=Delivery.attempts - 1,
    )
    _update_claimed(
        conn,
        fence,
        [{"b_id": r.delivery_id, "b_nb": r.not_before, "b_err": r.error} for r in retries],
        status=DeliveryStatus.QUEUED,
        not_before=bindparam("b_nb"),
        error=bindparam("b_err"),
    )
    _update_claimed(
        conn,
        fence,
        [{"b_id": i} for i in results.skipped],
        status=DeliveryStatus.SKIPPED,
        error_class="NotDeliverable",
        error=NOT_DELIVERABLE,
    )
    return Tally(len(results.sent), len(failed), len(results.skipped), len(retries), rejected)


def _fenced(fence: Fence) -> list[ColumnElement[bool]]:
    """The WHERE terms of every result write: the row is still this claim's."""
    return [
        Delivery.worker == fence.worker,
        Delivery.fence == fence.generation,
        Delivery.status == DeliveryStatus.SENDING,
    ]


def _still_held(conn: Connection, ids: list[int], fence: Fence) -> set[int]:
    """Which of ``ids`` are still this claim's (locked on PostgreSQL until the write
    commits, so the count of rejected rows is exact)."""
    if not ids:
        return set()
    query = select(Delivery.id).where(id_in(Delivery.id, ids, conn), *_fenced(fence))
    if not is_sqlite(conn):
        query = query.with_for_update()
    return {row_id for (row_id,) in conn.execute(query)}


def _update_claimed(
    conn: Connection, fence: Fence, rows: list[dict[str, Any]], **values: Any
) -> None:
    """:func:`subscribers.bulk.update_by_id` with the fence in its WHERE clause."""
    if not rows:
        return
    fenced = update(Delivery).where(Delivery.id == bindparam("b_id"), *_fenced(fence))
    conn.execute(fenced.values(**values), rows)


def mark_sent(
    conn: Connection, rows: list[Sent], now: datetime, fence: Fence | None = None
) -> None:
    """Mark a batch's sent rows with their message ids in one statement: ``UPDATE ... FROM
    json_each(pairs)`` on SQLite, ``UPDATE ... FROM unnest(ids, message_ids)`` on PostgreSQL;
    only rows still held under ``fence`` (None: unfenced, for tests of the statement)."""
    if not rows:
        return
    held = _fenced(fence) if fence is not None else []
    values: dict[str, Any] = {
        "status": DeliveryStatus.SENT,
        "sent_at": now,
        "error_class": None,
        "error": None,
    }
    if is_sqlite(conn):
        # one statement over a JSON array, not an executemany: sqlite3 lets go of the GIL
        # for every row of one, and waited for it back behind the sending threads
        pairs_json = json.dumps(rows)  # a Sent is a (delivery_id, message_id) pair
        value: ColumnElement[str] = literal_column("value")
        sqlite_pairs = (
            select(
                func.json_extract(value, "$[0]").label("id"),
                func.json_extract(value, "$[1]").label("mid"),
            )
            .select_from(func.json_each(bindparam("pairs", pairs_json)))
            .subquery()
        )
        conn.execute(
            update(Delivery)
            .where(Delivery.id == sqlite_pairs.c.id, *held)
            .values(message_id=sqlite_pairs.c.mid, **values)
        )
        return
    ids = [r.delivery_id for r in rows]
    pairs = (
        func.unnest(
            bindparam("ids", ids, type_=ARRAY(BigInteger)),
            bindparam("mids", [r.message_id for r in rows], type_=ARRAY(Text)),
        )
        .table_valued("id", "mid")
        .render_derived()
    )
    conn.execute(
        update(Delivery)
        # the ANY keeps the planner on the primary key: joined to the unnest alone it
        # hashed the whole table for every batch
        .where(Delivery.id == pairs.c.id, id_in(Delivery.id, ids, conn), *held)
        .values(message_id=pairs.c.mid, **values)
    )


def _attempts(conn: Connection, ids: list[int]) -> dict[int, int]:
    """Each row's attempts so far (only rows to retry need it; usually none)."""
    if not ids:
        return {}
    found = conn.execute(
        select(Delivery.id, Delivery.attempts).where(id_in(Delivery.id, ids, conn))
    )
    return {row_id: attempts for row_id, attempts in found}


def state_counts(s: Session, campaign_id: int) -> dict[str, int]:
    """Rows per delivery status of one campaign."""
    rows = s.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    )
    return {status: n for status, n in rows}
