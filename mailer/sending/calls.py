"""The transport calls of one engine run, on the send pool's threads.

Each call waits for its paced slot (:class:`mailer.sending.pacing.Pacer`), and none goes
out after the first account-level refusal (a ``FatalSendError``, or a ``NotSentError``
inside a batch): the rows it kept from going out come back as not attempted, and the
refusal is kept for the engine to pause the campaign with when it records the batch.
Split from the engine because this is the one part that runs on the pool's threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mailer.errors import FatalSendError, NotSentError, RetryableSendError, TransportError
from mailer.sending.outcomes import Outcome
from mailer.sending.pacing import Pacer
from mailer.transports.base import CampaignMessage, OutgoingMessage, SendResult, Transport

log = logging.getLogger(__name__)


class Calls:
    """One run's calls: thread-safe; :meth:`stop` ends them for good. ``on_answer`` is
    given each call's outcomes as soon as it returns, on its thread (the run's progress
    per message)."""

    def __init__(
        self,
        transport: Transport,
        pacer: Pacer,
        on_answer: Callable[[list[Outcome]], None] | None = None,
    ) -> None:
        self.transport = transport
        self.pacer = pacer
        self.on_answer = on_answer
        self._stopped = threading.Event()
        self._refusals: list[FatalSendError] = []

    def stop(self) -> None:
        """No call after this one (an account-level refusal, or the run is failing)."""
        self._stopped.set()

    @property
    def refusal(self) -> FatalSendError | None:
        """The first account-level refusal, if any came."""
        return self._refusals[0] if self._refusals else None

    def call(
        self, campaign: CampaignMessage, chunk: list[OutgoingMessage], start_at: float
    ) -> list[Outcome]:
        """One transport call in its paced slot. An account-level refusal stops every
        later call; the rows it kept from going out are not attempted."""
        not_attempted = [Outcome(m.delivery_id, None) for m in chunk]
        if self._stopped.is_set():
            return not_attempted
        on_time = self.pacer.wait(start_at, len(chunk))
        if not on_time or self._stopped.is_set():  # a missed slot: no burst to catch up
            return not_attempted
        try:
            results = self.transport.send(campaign, chunk)
        except FatalSendError as err:
            self._refused(err)
            return not_attempted
        except TransportError as err:
            results = [SendResult(error=err) for _ in chunk]
        except Exception as err:  # a bug or library surprise: retry, never lose the row
            log.exception("transport raised an unexpected error")
            wrapped = RetryableSendError(f"{type(err).__name__}: {err}")
            results = [SendResult(error=wrapped) for _ in chunk]
        outcomes: list[Outcome] = []
        for m, r in zip(chunk, results, strict=True):
            if isinstance(r.error, NotSentError):  # refused mid-batch: keep what went out
                self._refused(r.error.fatal)
                outcomes.append(Outcome(m.delivery_id, None))
            else:
                outcomes.append(Outcome(m.delivery_id, r))
        if self.on_answer is not None:
            self.on_answer(outcomes)
        return outcomes

    def _refused(self, err: FatalSendError) -> None:
        self._stopped.set()
        self._refusals.append(err)
