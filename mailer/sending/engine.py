"""The send engine: claim a batch of Delivery rows, personalize, send, record.

DESIGN.md principle 2 — the Delivery row is the truth:

* rows are claimed (``queued -> sending``, with worker id and time) in one statement per
  batch before the transport is called, and marked (``sent``/``failed``/``skipped``, or back
  to ``queued`` with a ``not_before`` for a retry) in one transaction per batch after;
* a worker that dies leaves ``sending`` rows behind; any other worker (or
  ``campaigns resume``) re-claims them once their worker's heartbeat lease has expired or the
  claim is older than ``MAILER_LEASE_SECONDS``, and counts them in ``Campaign.reclaimed`` —
  those, and only those, may have been sent twice;
* on PostgreSQL claims use ``FOR UPDATE SKIP LOCKED`` so any number of workers share a
  campaign; on SQLite one sending worker at a time holds a lease.

The campaign's rate holds across workers: each claim reserves its time slot on
``Campaign.rate_cursor`` (under the campaign row's lock) and the worker paces the batch
inside that slot.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Text,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, load_only, sessionmaker

from mailer.config import Settings
from mailer.errors import (
    ConflictError,
    FatalSendError,
    MailerError,
    NotSentError,
    RejectedError,
    RetryableSendError,
    TransportError,
)
from mailer.render.compiler import clean_field
from mailer.render.message import MessageTemplate
from mailer.render.tokens import Signer
from mailer.sending.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Lease
from mailer.transports.base import OutgoingMessage, SendResult, Transport
from subscribers.db import InlineExecutor
from subscribers.models import (
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
    UTCDateTime,
    utcnow,
)

log = logging.getLogger(__name__)

#: A claim on PostgreSQL in one round trip: lock the next queued rows (skipping rows other
#: workers hold), mark them ours, and return each with its reader and whether the reader is
#: still deliverable (active on the list, not suppressed). Same rules as the portable path:
#: ``_recipients`` and the queued select in ``Engine._claim``.
CLAIM_QUEUED_PG = text(
    """
    WITH claimed AS (
        UPDATE deliveries AS d
        SET status = 'sending', worker = :worker, claimed_at = :now, attempts = d.attempts + 1
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

MAX_ATTEMPTS = 8
DB_TRIES = 3  # writes of a sent batch survive this many lost connections
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TTL = 30.0
SQLITE_LEASE = "sqlite-sender"


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{random.randrange(16**4):04x}"


@dataclass
class Progress:
    """What the engine reports after each batch (and returns at the end)."""

    campaign_id: int
    total: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    started: float = field(default_factory=time.monotonic)
    status: str = ""
    reason: str | None = None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery_id: int
    subscriber_id: int | None


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivery_id: int
    result: SendResult | None  # None: not attempted (stopped before the call)


class Pacer:
    """Spaces calls evenly at the campaign's rate; adapts down on throttling.

    Each call waits for its slot: no earlier than its batch's reserved start (the shared
    cursor) and ``cost / rate`` after the previous call."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0
        self.rate = 0.0
        self.factor = 1.0  # < 1 after throttling; recovers slowly

    def wait(self, not_before: float = 0.0, cost: int = 1) -> None:
        with self._lock:
            now = time.monotonic()
            at = max(now, not_before)
            if self.rate > 0:
                at = max(at, self._next)
                self._next = at + cost / (self.rate * self.factor)
        if at > now:
            self._sleep(at - now)

    def throttled(self) -> None:
        self.factor = max(0.05, self.factor * 0.5)

    def calm(self) -> None:
        self.factor = min(1.0, self.factor * 1.1)


@dataclass
class _Batch:
    claimed: list[_Claimed]
    recipients: dict[int, tuple[str, str]]
    futures: list[Future[list[_Outcome]]]


class _Stop:
    """What a claim returns when the campaign must not send now."""


STOP = _Stop()
PIPELINE = 2  # batches in flight: the next is claimed while the last one sends
STALE_SCAN_SECONDS = 5.0  # how often a worker looks for rows of dead workers to re-claim
RECORDS_AHEAD = 2  # sent batches waiting for the recorder before the engine waits for it
#: a transport whose batch is many concurrent calls (SES SendEmail) gets at most this many
#: seconds of the campaign's rate per batch, so a rate limit sees no bursts
BURST_SECONDS = 0.05


class Engine:
    """Sends campaigns. One Engine per worker process; thread-safe transports only."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        transport: Transport,
        *,
        worker_id: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.transport = transport
        self.worker_id = worker_id or new_worker_id()
        self.on_progress = on_progress
        self.signer = Signer.from_settings(settings)
        self.pacer = Pacer(sleep)
        self._sleep = sleep
        self._sqlite = sessions.kw["bind"].dialect.name == "sqlite"
        self._fatal: list[FatalSendError] = []
        self._stop_calls = threading.Event()  # set by a fatal error: no more transport calls
        self._stop = threading.Event()  # ends the heartbeat
        self._halt = threading.Event()  # ends sending after the batch in flight
        self._heartbeat: threading.Thread | None = None
        self._quota_checked = 0.0
        self._quota_left: float | None = None
        self._quota_lock = threading.Lock()  # claims take, the recorder gives back
        self._next_stale_scan = 0.0
        self._claim_after: dict[int, int] = {}  # campaign -> highest id this worker claimed
        self._rate = settings.send_rate
        self._rate_found = False  # True when _rate was guessed from throttling

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, *, wait: float = 0.0) -> None:
        """Register this worker (heartbeat lease); on SQLite also take the single-sender lease."""
        self.reap_dead_local_workers()
        self._beat()
        if self._sqlite:
            deadline = time.monotonic() + wait
            while not self._take_sqlite_lease():
                if time.monotonic() >= deadline:
                    raise ConflictError(
                        "another worker is sending on this SQLite database; SQLite allows one "
                        "sending worker at a time (use PostgreSQL for several, or wait)"
                    )
                self._sleep(1.0)
        self._heartbeat = threading.Thread(target=self._beat_loop, daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        with self.sessions.begin() as s:
            s.execute(
                delete(Lease).where(
                    or_(Lease.name == f"worker:{self.worker_id}", Lease.holder == self.worker_id)
                )
            )

    def reap_dead_local_workers(self) -> int:
        """Drop the leases of workers on this host whose process is gone (killed, crashed), so
        their claims are re-claimed at once instead of after the heartbeat lease runs out."""
        host = socket.gethostname()[:40]
        dead = []
        with self.sessions.begin() as s:
            for name, holder in s.execute(select(Lease.name, Lease.holder)):
                parts = holder.split(":")
                local = len(parts) == 3 and parts[0] == host and parts[1].isdigit()
                if local and not _pid_alive(int(parts[1])):
                    dead.append(name)
            if dead:
                s.execute(delete(Lease).where(Lease.name.in_(dead)))
        return len(dead)

    def _beat(self) -> None:
        with self.sessions.begin() as s:
            _upsert_lease(s, f"worker:{self.worker_id}", self.worker_id, HEARTBEAT_TTL)

    def _beat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._beat()
                if self._sqlite:
                    self._take_sqlite_lease()
            except Exception:  # a missed beat is retried; the lease outlives several
                log.warning("heartbeat failed", exc_info=True)

    def _take_sqlite_lease(self) -> bool:
        with self.sessions.begin() as s:
            lease = s.get(Lease, SQLITE_LEASE)
            now = utcnow()
            if lease is not None and lease.holder != self.worker_id and lease.expires_at > now:
                return False
            _upsert_lease(s, SQLITE_LEASE, self.worker_id, HEARTBEAT_TTL)
            return True

    def request_stop(self) -> None:
        """Finish the batch in flight, then return (SIGTERM, Ctrl-C)."""
        self._halt.set()

    @property
    def stopping(self) -> bool:
        return self._halt.is_set()

    # -- the loop --------------------------------------------------------------------------

    def run(self, campaign_id: int) -> Progress:
        """Send a campaign until nothing is left to claim, or it is paused/cancelled/expired."""
        with self.sessions.begin() as s:
            campaign = _get(s, campaign_id)
            if campaign.status in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING):
                if campaign.status == CampaignStatus.SCHEDULED:
                    campaign.status = CampaignStatus.SENDING
                campaign.started_at = campaign.started_at or utcnow()
            mlist = s.get(MailingList, campaign.list_id)
            assert mlist is not None
            template = MessageTemplate.build(
                campaign_id=campaign.id,
                subject=campaign.subject,
                from_address=mlist.from_address,
                reply_to=mlist.reply_to,
                html=campaign.html,
                text=campaign.text,
                list_name=mlist.name,
                list_slug=mlist.slug,
            )
            progress = Progress(campaign_id)
            counts = state_counts(s, campaign_id)
            progress.total = sum(counts.values())
            progress.status = campaign.status
            list_id = campaign.list_id
        if progress.status != CampaignStatus.SENDING:
            return progress
        self._init_rate()
        self._fatal = []
        self._stop_calls = threading.Event()
        pool = ThreadPoolExecutor(
            max_workers=self.settings.send_concurrency, thread_name_prefix="send"
        )
        # results are written by one recorder thread, in order, while this thread claims
        # and personalizes the next batch: the two waits on the database overlap. SQLite
        # has one writer at a time: there the two would only queue for its lock, so the
        # results are written here, in turn
        recorder: Executor = (
            InlineExecutor() if self._sqlite else ThreadPoolExecutor(1, thread_name_prefix="record")
        )
        recording: deque[Future[None]] = deque()
        inflight: deque[_Batch] = deque()
        stop = paused = False

        def settle(wait: bool) -> None:
            """Collect written batches (all of them with ``wait``): a failed write raises
            here; progress is reported after each."""
            while recording and (wait or recording[0].done()):
                recording.popleft().result()
                if self.on_progress is not None:
                    self.on_progress(progress)

        try:
            while True:
                settle(wait=len(recording) > RECORDS_AHEAD)
                if not stop and len(inflight) < PIPELINE:
                    claim = (
                        STOP if self._halt.is_set() else self._claim(campaign_id, list_id, progress)
                    )
                    if isinstance(claim, _Stop):
                        stop = True
                    elif claim is not None:
                        inflight.append(self._submit(pool, template, list_id, *claim))
                        continue
                if inflight:
                    batch = inflight.popleft()
                    outcomes = [o for f in batch.futures for o in f.result()]
                    fatal = self._fatal[0] if self._fatal and not paused else None
                    if fatal is not None:
                        stop = paused = True
                    recording.append(
                        recorder.submit(self._record, campaign_id, batch, outcomes, progress, fatal)
                    )
                    continue
                settle(wait=True)
                if stop or self._finish_if_drained(campaign_id, progress):
                    break
                self._sleep(0.5)  # rows waiting for a retry time, or claimed elsewhere
        except Exception:
            # a failed claim/check (e.g. the database connection was cut) must not drop the
            # batches already handed to SES: record them, or they are re-sent after re-claim
            self._stop_calls.set()
            recorder.shutdown(wait=True)
            for written in recording:
                if written.exception() is not None:  # left `sending`: re-claimed, counted
                    log.warning("could not record a sent batch", exc_info=written.exception())
            self._record_inflight(campaign_id, inflight, progress)
            raise
        finally:
            self._stop_calls.set()
            pool.shutdown(wait=True, cancel_futures=True)
            recorder.shutdown(wait=True)
        if self.on_progress is not None:
            self.on_progress(progress)
        return progress

    def _record_inflight(
        self, campaign_id: int, inflight: deque[_Batch], progress: Progress
    ) -> None:
        """Best effort while failing: what is left stays `sending` and is re-claimed."""
        while inflight:
            batch = inflight.popleft()
            try:
                outcomes = [o for f in batch.futures for o in f.result()]
                self._record(campaign_id, batch, outcomes, progress, None)
            except Exception:
                log.warning("could not record a batch in flight", exc_info=True)

    # -- steps -----------------------------------------------------------------------------

    def _init_rate(self) -> None:
        quota = getattr(self.transport, "quota", None)
        if quota is None:
            return
        try:
            max_rate, max_24h, sent_24h = quota()
        except MailerError as err:
            log.warning("could not read the SES quota: %s", err)
            return
        if not self._rate:
            self._rate = float(max_rate)
        self._quota_left = max(0.0, float(max_24h) - float(sent_24h)) if max_24h >= 0 else None
        self._quota_checked = time.monotonic()

    def _judge(self, s: Session, campaign: Campaign, progress: Progress) -> bool:
        """Before a claim, in its transaction: honour pause/cancel, expiry, the quota and the
        reputation guard; True when the campaign must not send more now."""
        progress.status, progress.reason = campaign.status, campaign.pause_reason
        if campaign.status != CampaignStatus.SENDING:
            return True
        if campaign.expires_at is not None and utcnow() >= campaign.expires_at:
            expire(s, campaign, "the campaign expired before every reader got it")
        elif self._quota_left is not None and self._quota_left < 1:
            pause(s, campaign, "SES 24-hour sending quota reached; resume when it resets")
        else:
            reason = _guard(s, campaign.id, self.settings)
            if not reason:
                return False
            pause(s, campaign, f"reputation guard: {reason}")
        progress.status, progress.reason = campaign.status, campaign.pause_reason
        return True

    def _claim(
        self, campaign_id: int, list_id: int, progress: Progress
    ) -> tuple[list[_Claimed], dict[int, tuple[str, str]], float] | _Stop | None:
        """Claim up to one batch: the rows, (email, name) per deliverable reader, and the
        monotonic time its reserved slot starts; ``STOP`` when the campaign must not send
        now (see :meth:`_judge`), None when no row is ready."""
        size = self.settings.batch_size
        if self._quota_left is not None:
            size = max(1, min(size, int(self._quota_left)))
        now = utcnow()
        with self.sessions.begin() as s:
            campaign_q = (
                select(Campaign)
                .where(Campaign.id == campaign_id)
                .options(load_only(*_STATE, *_PACING))
            )
            if not self._sqlite:
                campaign_q = campaign_q.with_for_update()
            campaign = s.scalars(campaign_q).one()
            if self._judge(s, campaign, progress):
                return STOP
            rows: list[Any] = []
            if time.monotonic() >= self._next_stale_scan:
                rows = self._stale(s, campaign_id, now, size)
                # leases last tens of seconds: looking for dead workers' rows every few
                # seconds finds them as soon as it matters, without a scan per batch
                self._next_stale_scan = time.monotonic() + STALE_SCAN_SECONDS
            reclaimed = len(rows)
            if rows:
                self._mark_claimed(s, [r[0] for r in rows], now)
            lookup = list(rows)  # re-claimed rows: their readers are looked up below
            recipients: dict[int, tuple[str, str]] = {}
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
                        recipients.update(found)
                    if fresh:
                        self._claim_after[campaign_id] = max(
                            self._claim_after.get(campaign_id, 0), max(r[0] for r in fresh)
                        )
                    if len(rows) >= size:
                        break
            if not rows:
                return None
            readers = [int(r[1]) for r in lookup if r[1] is not None]
            if readers:
                recipients.update(_recipients(s, list_id, readers, self._sqlite))
            if reclaimed:
                campaign.reclaimed = Campaign.reclaimed + reclaimed
            # reserve this batch's slot on the campaign's shared pacing cursor
            start_in = 0.0
            if self._rate:
                cursor = campaign.rate_cursor
                start = max(now, cursor) if cursor is not None else now
                campaign.rate_cursor = start + timedelta(seconds=len(rows) / self._rate)
                start_in = (start - now).total_seconds()
        self.pacer.rate = self._rate
        with self._quota_lock:
            if self._quota_left is not None:
                self._quota_left -= len(rows)  # reserved; unsent ones given back on record
        start_at = time.monotonic() + start_in
        return [_Claimed(r[0], r[1]) for r in rows], recipients, start_at

    def _claim_queued(
        self, s: Session, campaign_id: int, list_id: int, now: datetime, n: int, after: int
    ) -> tuple[list[tuple[int, int | None]], dict[int, tuple[str, str]] | None]:
        """Claim up to ``n`` queued rows with ids above ``after``, in id order; with the
        readers found deliverable on PostgreSQL (one statement), None (not looked up) on
        SQLite."""
        if not self._sqlite:
            params = {
                "campaign_id": campaign_id,
                "list_id": list_id,
                "now": now,
                "n": n,
                "after": after,
                "worker": self.worker_id,
            }
            found = sorted(s.execute(CLAIM_QUEUED_PG, params).all(), key=lambda r: int(r[0]))
            readers = {r[1]: (r[2], r[3] or "") for r in found if r[4]}
            return [(r[0], r[1]) for r in found], readers
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
        fresh = [(r[0], r[1]) for r in s.execute(queued)]
        if fresh:
            self._mark_claimed(s, [r[0] for r in fresh], now)
        return fresh, None

    def _mark_claimed(self, s: Session, ids: list[int], now: datetime) -> None:
        s.execute(
            update(Delivery)
            .where(_id_in(Delivery.id, ids, self._sqlite))
            .values(
                status=DeliveryStatus.SENDING,
                worker=self.worker_id,
                claimed_at=now,
                attempts=Delivery.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )

    def _stale(self, s: Session, campaign_id: int, now: datetime, size: int) -> list[Any]:
        """`sending` rows whose worker is gone (lease expired) or whose claim is too old."""
        live = select(Lease.holder).where(Lease.name.like("worker:%"), Lease.expires_at > now)
        q = (
            select(Delivery.id, Delivery.subscriber_id)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == DeliveryStatus.SENDING,
                or_(
                    Delivery.claimed_at < now - timedelta(seconds=self.settings.lease_seconds),
                    Delivery.worker.not_in(live),
                ),
            )
            .order_by(Delivery.id)
            .limit(size)
        )
        if not self._sqlite:
            q = q.with_for_update(skip_locked=True)
        return [tuple(r) for r in s.execute(q)]

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        template: MessageTemplate,
        list_id: int,
        claimed: list[_Claimed],
        recipients: dict[int, tuple[str, str]],
        start_at: float,
    ) -> _Batch:
        """Personalize the deliverable rows and hand them to the pool; skipped rows get no
        outcome. Calls are paced from ``start_at`` (monotonic) on."""
        messages = [
            self._personalize(template, list_id, c, recipients[c.subscriber_id])
            for c in claimed
            if c.subscriber_id is not None and c.subscriber_id in recipients
        ]
        step = max(1, self.transport.max_batch)
        if self._rate and self.transport.concurrent_batch:
            step = min(step, max(1, int(self._rate * BURST_SECONDS)))
        chunks = [messages[i : i + step] for i in range(0, len(messages), step)]

        def call(chunk: list[OutgoingMessage]) -> list[_Outcome]:
            not_attempted = [_Outcome(m.delivery_id, None) for m in chunk]
            if self._stop_calls.is_set():
                return not_attempted
            self.pacer.wait(start_at, len(chunk))
            if self._stop_calls.is_set():
                return not_attempted
            try:
                results = self.transport.send(template.campaign, chunk)
            except FatalSendError as err:
                self._stop_calls.set()  # no call after an account-level refusal
                self._fatal.append(err)
                return not_attempted
            except TransportError as err:
                results = [SendResult(error=err) for _ in chunk]
            except Exception as err:  # a bug or library surprise: retry, never lose the row
                log.exception("transport raised an unexpected error")
                wrapped = RetryableSendError(f"{type(err).__name__}: {err}")
                results = [SendResult(error=wrapped) for _ in chunk]
            outcomes: list[_Outcome] = []
            for m, r in zip(chunk, results, strict=True):
                if isinstance(r.error, NotSentError):  # refused mid-batch: keep what went out
                    self._stop_calls.set()
                    self._fatal.append(r.error.fatal)
                    outcomes.append(_Outcome(m.delivery_id, None))
                else:
                    outcomes.append(_Outcome(m.delivery_id, r))
            return outcomes

        return _Batch(claimed, recipients, [pool.submit(call, c) for c in chunks])

    def _personalize(
        self, template: MessageTemplate, list_id: int, claimed: _Claimed, who: tuple[str, str]
    ) -> OutgoingMessage:
        assert claimed.subscriber_id is not None
        email, name = who
        return reader_message(
            template,
            self.signer,
            self.settings.public_base,
            list_id=list_id,
            subscriber_id=claimed.subscriber_id,
            delivery_id=claimed.delivery_id,
            email=email,
            name=name,
            raw=self.transport.wants_raw,
        )

    def _record(
        self,
        campaign_id: int,
        batch: _Batch,
        outcomes: list[_Outcome],
        progress: Progress,
        fatal: FatalSendError | None,
    ) -> None:
        """Write the batch's results in one transaction."""
        now = utcnow()
        sent: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        unsent: list[dict[str, Any]] = []  # never attempted (stopped first)
        retryable: list[dict[str, Any]] = []
        throttled = False
        for o in outcomes:
            if o.result is None:
                unsent.append({"b_id": o.delivery_id})
            elif o.result.ok:
                sent.append({"b_id": o.delivery_id, "b_mid": o.result.message_id})
            elif isinstance(o.result.error, RetryableSendError):
                err = o.result.error
                throttled = throttled or err.throttled
                retryable.append(
                    {
                        "b_id": o.delivery_id,
                        "b_nb": now + timedelta(seconds=_backoff(err)),
                        "b_err": f"{type(err).__name__}: {err}"[:2000],
                    }
                )
            else:
                bad: TransportError = o.result.error or RejectedError("unknown error")
                failed.append(
                    {
                        "b_id": o.delivery_id,
                        "b_cls": type(bad).__name__,
                        "b_err": str(bad)[:2000],
                    }
                )
        attempted = {o.delivery_id for o in outcomes}
        skipped = [{"b_id": c.delivery_id} for c in batch.claimed if c.delivery_id not in attempted]
        for db_try in range(1, DB_TRIES + 1):
            # the batch is sent: losing this write would re-send it after a re-claim, so a
            # connection cut (failover, pg_terminate_backend) is retried on a fresh one
            try:
                with self.sessions.begin() as s:
                    conn = s.connection()  # Core: one statement per kind for the whole batch
                    attempts = _attempts(conn, [r["b_id"] for r in retryable], self._sqlite)
                    retries = [r for r in retryable if attempts.get(r["b_id"], 0) < MAX_ATTEMPTS]
                    exhausted = [
                        {"b_id": r["b_id"], "b_cls": "RetryableSendError", "b_err": r["b_err"]}
                        for r in retryable
                        if attempts.get(r["b_id"], 0) >= MAX_ATTEMPTS
                    ]
                    _mark_sent(conn, sent, now, self._sqlite)
                    _update_by_id(
                        conn,
                        failed + exhausted,
                        status=DeliveryStatus.FAILED,
                        error_class=bindparam("b_cls"),
                        error=bindparam("b_err"),
                    )
                    # never attempted (stopped first): not an attempt either
                    _update_by_id(
                        conn, unsent, status=DeliveryStatus.QUEUED, attempts=Delivery.attempts - 1
                    )
                    _update_by_id(
                        conn,
                        retries,
                        status=DeliveryStatus.QUEUED,
                        not_before=bindparam("b_nb"),
                        error=bindparam("b_err"),
                    )
                    _update_by_id(
                        conn,
                        skipped,
                        status=DeliveryStatus.SKIPPED,
                        error_class="NotDeliverable",
                        error="unsubscribed, suppressed or erased since the campaign was queued",
                    )
                    if fatal is not None:
                        campaign = _get(s, campaign_id)
                        pause(s, campaign, f"{type(fatal).__name__}: {fatal}")
                        progress.status, progress.reason = campaign.status, campaign.pause_reason
                break
            except DBAPIError as err:
                if not err.connection_invalidated or db_try == DB_TRIES:
                    raise
                log.warning("recording a batch lost its connection; retrying (%s)", err.orig)
                self._sleep(0.2 * db_try)
        progress.sent += len(sent)
        progress.failed += len(failed) + len(exhausted)
        progress.skipped += len(skipped)
        progress.retried += len(retries)
        with self._quota_lock:
            if self._quota_left is not None:
                self._quota_left += len(batch.claimed) - len(sent)
        if throttled:
            self.pacer.throttled()
            if not self._rate:  # no limit known: start one below what we just managed
                self._rate = max(1.0, progress.rate * 0.5)
                self._rate_found = True
        else:
            self.pacer.calm()
            if self._rate_found:  # a limit we guessed ourselves: probe upwards again
                self._rate *= 1.1
                self.pacer.rate = self._rate

    def _finish_if_drained(self, campaign_id: int, progress: Progress) -> bool:
        with self.sessions.begin() as s:
            counts = state_counts(s, campaign_id)
            if counts.get(DeliveryStatus.QUEUED, 0) or counts.get(DeliveryStatus.SENDING, 0):
                return False
            campaign = _get(s, campaign_id)
            if campaign.status == CampaignStatus.SENDING:
                campaign.status = CampaignStatus.DONE
                campaign.finished_at = utcnow()
            progress.status = campaign.status
            return True


# -- helpers shared with the CLI ---------------------------------------------------------


def reader_message(
    template: MessageTemplate,
    signer: Signer,
    base_url: str,
    *,
    list_id: int,
    subscriber_id: int,
    delivery_id: int,
    email: str,
    name: str,
    raw: bool = True,
) -> OutgoingMessage:
    """One reader's message: signed links, cleaned fields, spliced MIME (the per-reader path;
    the engine and `send --test-to` both build messages here)."""
    unsub = f"{base_url}/unsubscribe/{signer.sign('unsubscribe', subscriber_id, list_id)}"
    prefs = f"{base_url}/preferences/{signer.preferences_token(subscriber_id, list_id)}"
    fields = {"unsubscribe_url": unsub, "preferences_url": prefs, "name": clean_field(name)}
    message_id = template.message_id(delivery_id)
    headers = template.reader_headers(email, unsub, message_id)
    body = template.render(to=email, fields=fields, headers=headers) if raw else b""
    return OutgoingMessage(delivery_id, email, body, fields, headers, message_id)


def _id_in(column: Any, ids: list[int], sqlite: bool) -> ColumnElement[bool]:
    """``column IN (...)``; on PostgreSQL ``column = ANY(:array)``: one parameter, so the
    statement is the same for every batch (an IN list of 1,000 placeholders was re-parsed
    by the driver for each one)."""
    if sqlite:
        return column.in_(ids)  # type: ignore[no-any-return]
    return column == any_(bindparam(None, ids, type_=ARRAY(BigInteger)))  # type: ignore[no-any-return]


def _mark_sent(conn: Connection, rows: list[dict[str, Any]], now: datetime, sqlite: bool) -> None:
    """Mark a batch's sent rows with their message ids in one statement: ``UPDATE ... FROM
    json_each(pairs)`` on SQLite, ``UPDATE ... FROM unnest(ids, message_ids)`` on PostgreSQL."""
    if not rows:
        return
    values: dict[str, Any] = {
        "status": DeliveryStatus.SENT,
        "sent_at": now,
        "error_class": None,
        "error": None,
    }
    if sqlite:
        # one statement over a JSON array, not an executemany: sqlite3 lets go of the GIL
        # for every row of one, and waited for it back behind the sending threads
        pairs_json = json.dumps([[r["b_id"], r["b_mid"]] for r in rows])
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
            .where(Delivery.id == sqlite_pairs.c.id)
            .values(message_id=sqlite_pairs.c.mid, **values)
        )
        return
    ids = [r["b_id"] for r in rows]
    pairs = (
        func.unnest(
            bindparam("ids", ids, type_=ARRAY(BigInteger)),
            bindparam("mids", [r["b_mid"] for r in rows], type_=ARRAY(Text)),
        )
        .table_valued("id", "mid")
        .render_derived()
    )
    conn.execute(
        update(Delivery)
        # the ANY keeps the planner on the primary key: joined to the unnest alone it
        # hashed the whole table for every batch
        .where(Delivery.id == pairs.c.id, _id_in(Delivery.id, ids, sqlite))
        .values(message_id=pairs.c.mid, **values)
    )


def _attempts(conn: Connection, ids: list[int], sqlite: bool) -> dict[int, int]:
    """Each row's attempts so far (only rows to retry need it; usually none)."""
    if not ids:
        return {}
    found = conn.execute(
        select(Delivery.id, Delivery.attempts).where(_id_in(Delivery.id, ids, sqlite))
    )
    return {row_id: attempts for row_id, attempts in found}


def _update_by_id(conn: Connection, rows: list[dict[str, Any]], **values: Any) -> None:
    """One executemany ``UPDATE deliveries ... WHERE id = :b_id`` for a batch's rows."""
    if rows:
        conn.execute(
            update(Delivery).where(Delivery.id == bindparam("b_id")).values(**values), rows
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _backoff(err: RetryableSendError) -> float:
    base = 2.0 if err.throttled else 1.0
    return base + random.uniform(0, base)  # jittered; attempts spread the rest


def _guard(s: Session, campaign_id: int, settings: Settings) -> str | None:
    try:
        from mailer.sending import guard
    except ImportError:  # the reputation guard is optional in this build
        return None
    check: Callable[[Session, int, Settings], str | None] = guard.check_campaign
    return check(s, campaign_id, settings)


def _recipients(
    s: Session, list_id: int, subscriber_ids: list[int], sqlite: bool = True
) -> dict[int, tuple[str, str]]:
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
            _id_in(Subscriber.id, subscriber_ids, sqlite),
            Subscription.status == "active",
            Suppression.id.is_(None),
        )
    )
    return {sid: (email, name or "") for sid, email, name in rows}


def _get(s: Session, campaign_id: int) -> Campaign:
    campaign = s.get(Campaign, campaign_id)
    if campaign is None:
        from mailer.errors import NotFoundError

        raise NotFoundError(f"no campaign {campaign_id}")
    return campaign


def _upsert_lease(s: Session, name: str, holder: str, ttl: float) -> None:
    lease = s.get(Lease, name, with_for_update=s.get_bind().dialect.name != "sqlite")
    expires = utcnow() + timedelta(seconds=ttl)
    if lease is None:
        s.add(Lease(name=name, holder=holder, expires_at=expires))
    else:
        lease.holder, lease.expires_at = holder, expires


def state_counts(s: Session, campaign_id: int) -> dict[str, int]:
    rows = s.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    )
    return {status: n for status, n in rows}


def pause(s: Session, campaign: Campaign, reason: str) -> None:
    campaign.status = CampaignStatus.PAUSED
    campaign.pause_reason = reason[:2000]
    log.warning("campaign %s paused: %s", campaign.id, reason)


def expire(s: Session, campaign: Campaign, reason: str) -> None:
    """Too late to send: the rest of the list is skipped so the ledger is final."""
    campaign.status = CampaignStatus.EXPIRED
    campaign.pause_reason = reason
    campaign.finished_at = utcnow()
    s.execute(
        update(Delivery)
        .where(
            Delivery.campaign_id == campaign.id,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .values(status=DeliveryStatus.SKIPPED, error_class="Expired", error=reason)
    )
