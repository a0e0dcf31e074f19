"""A send's progress advances per answered message, not per written batch (issue 17: the
bar sat at 0 for a whole batch, then jumped). Counted in memory (no database write per
message); the written counts take over when the batch is recorded."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from mailer.errors import RejectedError, RetryableSendError
from mailer.render.message import CampaignMessage
from mailer.sending.engine import Engine
from mailer.sending.outcomes import Outcome, Tally
from mailer.sending.progress import Progress
from mailer.transports.base import OutgoingMessage, SendQuota, SendResult
from tests.conftest import Database
from tests.delivery_helpers import make_campaign, seed_list

BATCH = 12


class OneCallPerBatch:
    """Answers a whole batch in one call, as SES bulk does (and counts its calls)."""

    name = "one-call"
    max_batch = BATCH
    wants_raw = False
    concurrent_batch = False

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def send(self, campaign: CampaignMessage, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        with self._lock:
            self.calls.append(len(batch))
        return [SendResult(message_id=f"m-{m.delivery_id}") for m in batch]

    def quota(self) -> SendQuota | None:
        return None

    def close(self) -> None:
        pass


def test_a_calls_answers_advance_the_count_once_per_message() -> None:
    progress = Progress(1, total=5)
    seen: list[int] = []
    answers = [
        Outcome(1, SendResult(message_id="a")),
        Outcome(2, SendResult(error=RejectedError("no such mailbox"))),  # failed for good
        Outcome(3, SendResult(error=RetryableSendError("throttled"))),  # not settled yet
        Outcome(4, None),  # never sent (the run stopped first)
        Outcome(5, SendResult(message_id="e")),
    ]
    progress.answer(answers, lambda p: seen.append(p.advanced))
    assert seen == [1, 2, 3]
    assert progress.done == 0 and progress.unwritten == 3
    progress.add(Tally(sent=2, failed=1, skipped=0, retried=1), answered=3)
    assert (progress.advanced, progress.done, progress.unwritten) == (3, 3, 0)


def test_a_batch_of_n_advances_the_engines_progress_n_times(db: Database) -> None:
    settings = db.settings(batch_size=BATCH, send_concurrency=1)
    seed_list(db.sessions, BATCH)
    cid, enqueued, _ = make_campaign(db.sessions, settings)
    assert enqueued == BATCH
    transport = OneCallPerBatch()
    answered: list[tuple[int, int]] = []  # (advanced, written) at each answer
    batches: list[int] = []

    def on_answer(p: Progress) -> None:
        answered.append((p.advanced, p.done))

    def on_progress(p: Progress) -> None:
        batches.append(p.done)

    with Engine(
        settings, db.sessions, transport, on_progress=on_progress, on_answer=on_answer
    ) as engine:
        progress = engine.run(cid)
    assert progress.status == "done" and progress.sent == BATCH
    assert transport.calls == [BATCH]  # one call answered the whole batch ...
    # ... and the count still moved one message at a time, before anything was written
    assert answered == [(n, 0) for n in range(1, BATCH + 1)]
    assert batches[0] == BATCH and progress.advanced == BATCH and progress.unwritten == 0
