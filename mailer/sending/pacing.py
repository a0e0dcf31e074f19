"""Pacing: how fast one worker calls the transport, and how much the account may still send.

The campaign's rate holds across workers: each claim reserves its batch's time on
``Campaign.rate_cursor`` (under the campaign row's lock, in the claim's transaction) and the
worker's :class:`Pacer` spaces the batch's calls inside that slot. The rate is
``MAILER_SEND_RATE``, else SES's MaxSendRate, else (no limit known) one found from the
provider's throttling. The 24-hour quota is taken by each claim and what was not sent is
given back when the batch is recorded, so a campaign pauses before SES refuses.

A worker back from a partition or a pause does not burst to catch up (issue 18): a call
more than ``STALE_SLOT_SECONDS`` behind its schedule (its batch's slot and the previous
call's), or woken that late from its wait (the process was stopped while it slept), is not
made; its rows go back to the queue, and the worker's next claim reserves fresh time on the
shared cursor, after what the other workers reserved meanwhile.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from mailer.errors import MailerError
from mailer.sending.models import Campaign
from mailer.transports.base import Transport

log = logging.getLogger(__name__)

#: a transport whose batch is many concurrent calls (SES SendEmail) gets at most this many
#: seconds of the campaign's rate per call group, so a rate limit sees no bursts
BURST_SECONDS = 0.05
#: a call this far behind its schedule belongs to a slot the worker missed (it was
#: partitioned, paused, or its calls hung): it is not made. Healthy calls are milliseconds
#: behind; the claims run ahead of the clock by a few batches' time at most
STALE_SLOT_SECONDS = 10.0
#: a claim takes at most this many seconds of the paced rate: a worker slowed by throttling
#: hears back (and speeds up again) every few seconds, not after a batch that takes minutes
#: at its slowest, and a kill -9 strands few rows
BATCH_SECONDS = 2.0
#: a rate guessed from throttling (no limit known) grows this much per calm batch
GUESS_PROBE = 1.25
#: ... and is dropped (no limit known again) once this many times the rate achieved
GUESS_DROP = 4.0


class Pacer:
    """Spaces calls evenly at ``rate``; adapts down on throttling.

    Each call waits for its slot: no earlier than its batch's reserved start and ``cost /
    rate`` after the previous call. ``clock`` and ``sleep`` are injected, so tests read the
    slots instead of measuring a rate."""

    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0
        self.rate = 0.0
        self.factor = 1.0  # < 1 after throttling; recovers slowly

    def wait(self, not_before: float = 0.0, cost: int = 1) -> bool:
        """Sleep until the call's slot; False when the slot was missed by more than
        ``STALE_SLOT_SECONDS``, before the wait or by waking up late from it (a process
        stopped while it slept): the caller must not make the call."""
        with self._lock:
            now = self._clock()
            schedule = max(not_before, self._next)  # 0: none yet
            if self.rate > 0 and 0 < schedule < now - STALE_SLOT_SECONDS:
                return False
            at = max(now, not_before)
            if self.rate > 0:
                at = max(at, self._next)
                self._next = at + cost / (self.rate * self.factor)
        if at > now:
            self._sleep(at - now)
            if self.rate > 0 and self._clock() > at + STALE_SLOT_SECONDS:
                return False
        return True

    def throttled(self) -> None:
        self.factor = max(0.05, self.factor * 0.5)

    def calm(self) -> None:
        self.factor = min(1.0, self.factor * 1.1)


class Pacing:
    """One worker's rate and the account's 24-hour quota left (None: no daily limit known).

    The claiming thread takes quota, the recorder thread gives back what was not sent and
    adapts the rate; ``_quota_lock`` orders the two."""

    def __init__(
        self,
        rate: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pacer = Pacer(sleep, clock)
        self.clock = clock
        self.rate = rate  # messages per second for a campaign; 0: no limit known
        self._rate_guessed = False  # True when ``rate`` was found from throttling
        self._quota_left: float | None = None
        self._quota_lock = threading.Lock()

    def read_quota(self, transport: Transport) -> None:
        """Before a run: the provider's rate (unless one is set) and quota left today."""
        try:
            quota = transport.quota()
        except MailerError as err:
            log.warning("could not read the SES quota: %s", err)
            return
        if quota is None:
            return
        if not self.rate:
            self.rate = float(quota.max_send_rate)
        left = float(quota.max_24h_send) - float(quota.sent_last_24h)
        self._quota_left = max(0.0, left) if quota.max_24h_send >= 0 else None

    def batch_size(self, size: int) -> int:
        """A claim never takes more rows than the quota has left, nor more than
        ``BATCH_SECONDS`` of the rate it will be paced at."""
        if self.rate:
            paced = self.rate * self.pacer.factor
            size = min(size, max(1, math.ceil(paced * BATCH_SECONDS)))
        if self._quota_left is not None:
            return max(1, min(size, int(self._quota_left)))
        return size

    @property
    def quota_spent(self) -> bool:
        return self._quota_left is not None and self._quota_left < 1

    def reserve(self, campaign: Campaign, n: int, now: datetime) -> float:
        """Reserve ``n`` calls' time on the campaign's shared cursor (the row is locked by
        the claim); the seconds from ``now`` until the slot starts."""
        if not self.rate:
            return 0.0
        cursor = campaign.rate_cursor
        start = max(now, cursor) if cursor is not None else now
        campaign.rate_cursor = start + timedelta(seconds=n / self.rate)
        return (start - now).total_seconds()

    def claimed(self, n: int, start_in: float) -> float:
        """After the claim committed: ``n`` rows take quota (given back by :meth:`recorded`
        if not sent); the ``clock`` time the batch's slot starts."""
        self.pacer.rate = self.rate
        with self._quota_lock:
            if self._quota_left is not None:
                self._quota_left -= n
        return self.clock() + start_in

    def chunk_size(self, max_batch: int, concurrent: bool) -> int:
        """Messages per transport call: the transport's batch, cut to a short slice of the
        rate where a batch's calls go out at once."""
        step = max(1, max_batch)
        if self.rate and concurrent:
            step = min(step, max(1, int(self.rate * BURST_SECONDS)))
        return step

    def recorded(self, claimed: int, sent: int, throttled: bool, achieved: float) -> None:
        """A batch was written: give back unsent quota; slow down on throttling (no limit
        known: guess the ``achieved`` rate, which the throttled pacer then halves), probe up
        again when calm."""
        with self._quota_lock:
            if self._quota_left is not None:
                self._quota_left += claimed - sent
        if throttled:
            self.pacer.throttled()
            if not self.rate:
                self.rate = max(1.0, achieved)
                self._rate_guessed = True
        else:
            self.pacer.calm()
            if self._rate_guessed:  # a limit we guessed ourselves: probe upwards again
                self.rate *= GUESS_PROBE
                if self.rate > GUESS_DROP * max(achieved, 1.0):
                    # far above what the run achieves: it no longer binds; the next
                    # throttling guesses afresh from the achieved rate
                    self.rate, self._rate_guessed = 0.0, False
                self.pacer.rate = self.rate
