"""The send engine: claim a batch of Delivery rows, personalize, send, record.

docs/architecture.md principle 2 — the Delivery row is the truth: rows are claimed before the
transport is called and marked after (:mod:`mailer.sending.ledger`); a worker that dies
leaves ``sending`` rows that another worker (or ``campaigns resume``) claims again and
counts. The campaign's rate and the account's quota are :mod:`mailer.sending.pacing`'s;
every status change :mod:`mailer.sending.lifecycle`'s; the calls on the pool's threads
:mod:`mailer.sending.calls`'s; each reader's message :mod:`mailer.sending.personalize`'s.

One run keeps ``PIPELINE`` batches going: the next is claimed and personalized while the
last one sends on the pool's threads, and sent batches are written by one recorder thread,
in order, so the two waits on the database overlap (on SQLite, one writer at a time, they
are written in turn). A lost database connection is waited out with a growing pause and
the run goes on; what was in flight is recorded first, or left to be claimed again.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.errors import ConflictError, FatalSendError
from mailer.render.list_brand import greeting_for
from mailer.render.message import MessageTemplate
from mailer.render.tokens import Signer
from mailer.sending import guard, lifecycle, waves
from mailer.sending.calls import Calls
from mailer.sending.leases import (
    Heartbeat,
    beat,
    new_worker_id,
    reap_dead_local_workers,
    release,
    take_sqlite_lease,
)
from mailer.sending.ledger import Claim, Ledger, Reader, lock_campaign, state_counts
from mailer.sending.models import Campaign, CampaignStatus, DeliveryStatus, get_campaign
from mailer.sending.outcomes import ClaimedRow, Fence, Outcome, Results, Tally, record
from mailer.sending.pacing import Pacing
from mailer.sending.personalize import reader_message
from mailer.sending.progress import Progress, settles
from mailer.sending.tracked import campaign_html
from mailer.transports.base import OutgoingMessage, Transport
from subscribers.db import InlineExecutor, is_sqlite
from subscribers.models import MailingList, utcnow

log = logging.getLogger(__name__)

#: Progress and reader_message are read from here by the entrances and the use cases
__all__ = ["Engine", "NoClaim", "Progress", "reader_message"]

PIPELINE = 2  # batches in flight: the next is claimed while the last one sends
RECORDS_AHEAD = 2  # sent batches waiting for the recorder before the engine waits for it
DB_TRIES = 3  # writes of a sent batch survive this many lost connections
#: lost connections in a row (no batch written between them) before a run gives up; the
#: waits between them double from RECONNECT_FIRST_WAIT up to RECONNECT_MAX_WAIT seconds
RECONNECT_TRIES = 8
RECONNECT_FIRST_WAIT = 0.5
RECONNECT_MAX_WAIT = 30.0
IDLE_WAIT = 0.5  # rows waiting for a retry time, or claimed elsewhere


class NoClaim(enum.Enum):
    """Why a claim brought no batch."""

    STOP = "the campaign must not send now (paused, cancelled, expired, quota, guard)"
    IDLE = "no row is ready now"


@dataclass(frozen=True, slots=True)
class _Job:
    """What stays the same through one run of one campaign."""

    campaign_id: int
    list_id: int
    template: MessageTemplate
    progress: Progress
    tracked: bool = False  # the list tracks: each reader's %%track%% is filled
    waves: bool = False  # --at-local: the run ends between waves (mailer.sending.waves)


@dataclass(frozen=True, slots=True)
class _Batch:
    claim: Claim
    futures: list[Future[list[Outcome]]]


@dataclass
class _Flow:
    """One pass of the send loop: its threads and the batches between them."""

    pool: ThreadPoolExecutor
    recorder: Executor
    inflight: deque[_Batch] = field(default_factory=deque)  # claimed, sending
    recording: deque[Future[None]] = field(default_factory=deque)  # sent, being written
    claiming: bool = True  # False once the campaign must stop: finish what is in flight
    fatal_recorded: bool = False  # the account-level refusal went to the recorder already


class Engine:
    """Sends campaigns. One Engine per worker process; thread-safe transports only.

    ``sleep`` and ``clock`` (monotonic seconds) are injected for the pacing and the waits;
    ``wall`` (UTC now) for what the wall clock decides: a wave's release and expiry, and the
    campaign's expiry (leases, claims and marks keep the real time)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        transport: Transport,
        *,
        worker_id: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        # each answered message, on the send threads (in memory; on_progress: each batch)
        on_answer: Callable[[Progress], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.transport = transport
        self.worker_id = worker_id or new_worker_id()
        self.on_progress = on_progress
        self.on_answer = on_answer
        self.signer = Signer.from_settings(settings)
        self.pacing = Pacing(settings.send_rate, sleep, clock)
        self._sleep = sleep
        self.wall = wall
        self._sqlite = is_sqlite(sessions.kw["bind"])
        self.ledger = Ledger(
            self.worker_id, sqlite=self._sqlite, lease_seconds=settings.lease_seconds
        )
        self._heartbeat = Heartbeat(sessions, self.worker_id, sqlite=self._sqlite)
        self._calls = Calls(transport, self.pacing.pacer)  # a fresh one for each run
        self._stop_after_batch = threading.Event()  # request_stop: claim nothing more

    # -- the worker ------------------------------------------------------------------------

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, *, wait: float = 0.0) -> None:
        """Register this worker (heartbeat lease); on SQLite also take the single-sender lease."""
        with self.sessions.begin() as s:
            reap_dead_local_workers(s)
        with self.sessions.begin() as s:
            beat(s, self.worker_id)
        if self._sqlite:
            clock = self.pacing.clock  # the injected one, as the waits' sleep is
            deadline = clock() + wait
            while not self._take_sqlite_lease():
                if clock() >= deadline:
                    raise ConflictError(
                        "another worker is sending on this SQLite database; SQLite allows one "
                        "sending worker at a time (use PostgreSQL for several, or wait)"
                    )
                self._sleep(1.0)
        self._heartbeat.start()

    def _take_sqlite_lease(self) -> bool:
        with self.sessions.begin() as s:
            return take_sqlite_lease(s, self.worker_id)

    def close(self) -> None:
        self._heartbeat.stop()
        with self.sessions.begin() as s:
            release(s, self.worker_id)

    def request_stop(self) -> None:
        """Finish the batch in flight, then return (SIGTERM, Ctrl-C)."""
        self._stop_after_batch.set()

    @property
    def stopping(self) -> bool:
        return self._stop_after_batch.is_set()

    # -- a run -----------------------------------------------------------------------------

    def run(self, campaign_id: int) -> Progress:
        """Send a campaign until nothing is left to claim, or it is paused/cancelled/expired.

        A lost database connection does not end the run: it waits (``RECONNECT_FIRST_WAIT``
        seconds, doubling) and goes on with a fresh connection, after its own rows left in
        ``sending`` are marked for claiming again; ``RECONNECT_TRIES`` losses in a row with
        no batch written between them end it."""
        job: _Job | None = None
        losses = 0
        done_at_loss = 0
        while True:
            try:
                if job is None:
                    job = self._open(campaign_id)
                    if job.progress.status != CampaignStatus.SENDING:
                        return job.progress
                self._send(job)
                break
            except DBAPIError as err:
                done = job.progress.done if job is not None else 0
                losses = 1 if done > done_at_loss else losses + 1
                done_at_loss = done
                if not self.connection_lost(err) or losses > RECONNECT_TRIES:
                    raise
                wait = min(RECONNECT_MAX_WAIT, RECONNECT_FIRST_WAIT * 2 ** (losses - 1))
                log.warning(
                    "campaign %s: lost the database connection (%s); again in %.1f s",
                    campaign_id,
                    str(err.orig).strip().splitlines()[0] if err.orig else err,
                    wait,
                )
                self._sleep(wait)
                self.ledger.orphan_own_claims(utcnow())
        assert job is not None
        if self.on_progress is not None:
            self.on_progress(job.progress)
        return job.progress

    def connection_lost(self, err: DBAPIError) -> bool:
        """A cut connection (failover, a killed backend), or a PostgreSQL server that does
        not take connections right now: worth waiting for. (SQLite's operational errors
        are about the file, which waiting does not mend.)"""
        return err.connection_invalidated or (
            not self._sqlite and isinstance(err, OperationalError)
        )

    def _open(self, campaign_id: int) -> _Job:
        """Start the campaign (scheduled -> sending) and build its message template."""
        with self.sessions.begin() as s:
            campaign = get_campaign(s, campaign_id)
            # read again under the row's lock (PostgreSQL): a second worker starting at
            # the same moment waits for this one and keeps its start (started_at, the one
            # campaign.started event) instead of writing its own over it
            s.refresh(campaign, with_for_update=True)
            lifecycle.start(campaign)
            mlist = s.get(MailingList, campaign.list_id)
            assert mlist is not None
            html, tracked = campaign_html(s, campaign, self.signer, self.settings.public_base)
            template = MessageTemplate.build(
                campaign_id=campaign.id,
                subject=campaign.subject,
                from_address=mlist.from_address,
                reply_to=mlist.reply_to,
                html=html,
                text=campaign.text,
                list_name=mlist.name,
                list_slug=mlist.slug,
                greeting=greeting_for(mlist),
            )
            progress = Progress(campaign_id)
            progress.total = sum(state_counts(s, campaign_id).values())
            progress.status = campaign.status
            return _Job(
                campaign_id,
                campaign.list_id,
                template,
                progress,
                tracked,
                waves=campaign.at_local is not None,
            )

    def _send(self, job: _Job) -> None:
        """The send loop with its threads; on any failure the batches already handed to
        the transport are recorded before the error goes on (or they would be re-sent)."""
        self.pacing.read_quota(self.transport)

        def answered(outcomes: list[Outcome]) -> None:
            job.progress.answer(outcomes, self.on_answer)

        self._calls = Calls(self.transport, self.pacing.pacer, answered)
        pool = ThreadPoolExecutor(
            max_workers=self.settings.send_concurrency, thread_name_prefix="send"
        )
        # SQLite has one writer at a time: a recorder thread would only queue for its lock
        recorder: Executor = (
            InlineExecutor() if self._sqlite else ThreadPoolExecutor(1, thread_name_prefix="record")
        )
        flow = _Flow(pool, recorder)
        try:
            self._loop(job, flow)
        except Exception:
            # a failed claim/check (e.g. the database connection was cut) must not drop the
            # batches already handed to SES: record them, or they are re-sent after re-claim
            self._calls.stop()
            recorder.shutdown(wait=True)
            for written in flow.recording:
                if written.exception() is not None:  # left `sending`: re-claimed, counted
                    log.warning("could not record a sent batch", exc_info=written.exception())
            self._record_inflight(job, flow.inflight)
            raise
        finally:
            self._calls.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            recorder.shutdown(wait=True)

    def _loop(self, job: _Job, flow: _Flow) -> None:
        """Claim while the pipeline has room, hand sent batches to the recorder, and end when
        the campaign must stop or nothing is left."""
        while True:
            self._settle(job, flow, wait=len(flow.recording) > RECORDS_AHEAD)
            if flow.claiming and len(flow.inflight) < PIPELINE:
                claim = NoClaim.STOP if self.stopping else self._claim(job)
                if isinstance(claim, Claim):
                    flow.inflight.append(self._submit(flow.pool, job, claim))
                    continue
                flow.claiming = claim is not NoClaim.STOP
            if flow.inflight:
                self._hand_to_recorder(job, flow)
                continue
            self._settle(job, flow, wait=True)
            if not flow.claiming:
                self._close_ledger(job)
                return
            if self._finish_if_drained(job):
                return
            self._sleep(IDLE_WAIT)

    def _settle(self, job: _Job, flow: _Flow, *, wait: bool) -> None:
        """Collect written batches (all of them with ``wait``): a failed write raises here;
        progress is reported after each."""
        while flow.recording and (wait or flow.recording[0].done()):
            flow.recording.popleft().result()
            if self.on_progress is not None:
                self.on_progress(job.progress)

    def _hand_to_recorder(self, job: _Job, flow: _Flow) -> None:
        """Wait for the oldest batch's calls and queue its results for writing; the first
        account-level refusal goes with it (the campaign pauses) and claiming ends."""
        batch = flow.inflight.popleft()
        outcomes = [o for f in batch.futures for o in f.result()]
        fatal = None
        if self._calls.refusal is not None and not flow.fatal_recorded:
            fatal = self._calls.refusal
            flow.claiming = False
            flow.fatal_recorded = True
        flow.recording.append(flow.recorder.submit(self._record, job, batch, outcomes, fatal))

    def _record_inflight(self, job: _Job, inflight: deque[_Batch]) -> None:
        """Best effort while failing: what is left stays `sending` and is re-claimed."""
        while inflight:
            batch = inflight.popleft()
            try:
                outcomes = [o for f in batch.futures for o in f.result()]
                self._record(job, batch, outcomes, None)
            except Exception:
                log.warning("could not record a batch in flight", exc_info=True)

    # -- steps -----------------------------------------------------------------------------

    def _claim(self, job: _Job) -> Claim | NoClaim:
        """Judge the campaign and claim up to one batch, in one transaction that holds the
        campaign row; the batch's slot is reserved on the campaign's pacing cursor."""
        size = self.pacing.batch_size(self.settings.batch_size)
        now = utcnow()
        with self.sessions.begin() as s:
            campaign = lock_campaign(s, job.campaign_id, self._sqlite)
            if self._judge(s, campaign, job.progress):
                return NoClaim.STOP
            rows, readers = self.ledger.claim(
                s, campaign, job.list_id, size, now, time.monotonic(), release_now=self.wall()
            )
            if not rows or self.ledger.fence is None:  # none, or the lease lapsed
                return NoClaim.IDLE
            fence = self.ledger.fence
            start_in = self.pacing.reserve(campaign, len(rows), now)
        return Claim(rows, readers, self.pacing.claimed(len(rows), start_in), fence)

    def _judge(self, s: Session, campaign: Campaign, progress: Progress) -> bool:
        """Before a claim, in its transaction: honour pause/cancel, expiry, the quota and the
        reputation guard; True when the campaign must not send more now."""
        progress.status, progress.reason = campaign.status, campaign.pause_reason
        if campaign.status != CampaignStatus.SENDING:
            return True
        progress.skipped += waves.expire_waves(s, campaign, self.wall())
        if campaign.expires_at is not None and self.wall() >= campaign.expires_at:
            lifecycle.expire(s, campaign, "the campaign expired before every reader got it")
        elif self.pacing.quota_spent:
            lifecycle.auto_pause(
                campaign, "SES 24-hour sending quota reached; resume when it resets"
            )
        else:
            verdict = guard.check_campaign(s, campaign.id, self.settings)
            if not verdict:
                return False
            lifecycle.guard_pause(campaign, verdict)
        progress.status, progress.reason = campaign.status, campaign.pause_reason
        return True

    def _submit(self, pool: ThreadPoolExecutor, job: _Job, claim: Claim) -> _Batch:
        """Personalize the deliverable rows and hand them to the pool; skipped rows get no
        outcome. Calls are paced from ``claim.start_at`` on."""
        readers = claim.readers
        messages = [
            self._personalize(job, row, readers[row.subscriber_id])
            for row in claim.rows
            if row.subscriber_id is not None and row.subscriber_id in readers
        ]
        step = self.pacing.chunk_size(self.transport.max_batch, self.transport.concurrent_batch)
        message = job.template.campaign
        futures = [
            pool.submit(self._calls.call, message, messages[i : i + step], claim.start_at)
            for i in range(0, len(messages), step)
        ]
        return _Batch(claim, futures)

    def _personalize(self, job: _Job, row: ClaimedRow, reader: Reader) -> OutgoingMessage:
        assert row.subscriber_id is not None
        return reader_message(
            job.template,
            self.signer,
            self.settings.public_base,
            list_id=job.list_id,
            subscriber_id=row.subscriber_id,
            delivery_id=row.delivery_id,
            email=reader.email,
            name=reader.name,
            raw=self.transport.wants_raw,
            tracked=job.tracked,
        )

    def _record(
        self, job: _Job, batch: _Batch, outcomes: list[Outcome], fatal: FatalSendError | None
    ) -> None:
        """Write the batch's results (on the recorder thread) and adapt the pacing."""
        now = utcnow()
        results = Results.of(batch.claim.rows, outcomes, now)
        tally = self._write(job, results, now, fatal, batch.claim.fence)
        job.progress.add(tally, answered=sum(map(settles, outcomes)))
        self.pacing.recorded(
            len(batch.claim.rows), tally.sent, results.throttled, job.progress.rate
        )

    def _write(
        self,
        job: _Job,
        results: Results,
        now: datetime,
        fatal: FatalSendError | None,
        fence: Fence,
    ) -> Tally:
        """One transaction; with ``fatal`` the campaign pauses in it. The batch is sent:
        losing this write would re-send it after a re-claim, so a cut connection
        (failover, pg_terminate_backend) is retried on a fresh one."""
        db_try = 1
        while True:
            try:
                with self.sessions.begin() as s:
                    tally = record(s.connection(), results, now, fence)
                    if fatal is not None:  # locked: a cancel committing now is not undone
                        campaign = lock_campaign(s, job.campaign_id, self._sqlite)
                        lifecycle.auto_pause(campaign, f"{type(fatal).__name__}: {fatal}")
                        job.progress.status = campaign.status
                        job.progress.reason = campaign.pause_reason
                return tally
            except DBAPIError as err:
                if not err.connection_invalidated or db_try >= DB_TRIES:
                    raise
                log.warning("recording a batch lost its connection; retrying (%s)", err.orig)
                self._sleep(0.2 * db_try)
                db_try += 1

    def _close_ledger(self, job: _Job) -> None:
        """The run stopped: rows handed back while the campaign was cancelled or expired
        are skipped (lifecycle.close_ledger)."""
        with self.sessions.begin() as s:
            lifecycle.close_ledger(s, lock_campaign(s, job.campaign_id, self._sqlite))

    def _finish_if_drained(self, job: _Job) -> bool:
        """Done when nothing is queued or in flight; a wave campaign's run also ends while
        its next wave is not released (``progress.next_release``: a worker sends it then)."""
        with self.sessions.begin() as s:
            counts = state_counts(s, job.campaign_id)
            if counts.get(DeliveryStatus.QUEUED, 0) or counts.get(DeliveryStatus.SENDING, 0):
                if job.waves:
                    job.progress.next_release = waves.next_release(s, job.campaign_id, self.wall())
                return job.progress.next_release is not None
            # locked: a pause or cancel committing now is not overwritten by "done"
            campaign = lock_campaign(s, job.campaign_id, self._sqlite)
            lifecycle.finish(campaign)
            job.progress.status = campaign.status
            return True
