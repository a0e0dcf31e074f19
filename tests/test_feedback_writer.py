"""Group commit: concurrent events share a transaction; one bad event fails only itself."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mailer.feedback import rules as feedback
from mailer.feedback import writer as feedback_writer
from mailer.feedback.events import SESEvent, parse_event
from mailer.feedback.models import FeedbackEvent
from mailer.feedback.writer import FeedbackWriter
from tests.conftest import Database

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"


def opens(n: int) -> list[SESEvent]:
    base = json.loads((FIXTURES / "event_open.json").read_text())
    events = []
    for i in range(n):
        base["open"]["timestamp"] = f"2026-05-14T07:{i // 60:02d}:{i % 60:02d}.000Z"
        events.append(parse_event(copy.deepcopy(base), f"sns-{i}"))
    return events


def stored(db: Database) -> int:
    with db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(FeedbackEvent)) or 0)


def test_concurrent_events_are_committed_in_shared_batches(db: Database) -> None:
    writer = FeedbackWriter(db.settings(), db.sessions)
    events = opens(40)

    async def go() -> list[feedback.Outcome]:
        return await asyncio.gather(*(writer.apply(e) for e in [*events, events[0]]))

    outcomes = asyncio.run(go())
    assert [o.status for o in outcomes].count("applied") == 40
    assert outcomes[-1].status == "duplicate"
    assert stored(db) == 40
    assert writer.events == 41
    assert writer.batches < 41, "some commits carried several events"


def test_one_failing_event_fails_alone(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = FeedbackWriter(db.settings(), db.sessions)
    events = opens(6)
    real = feedback.apply_event

    def picky(session: Any, event: SESEvent, settings: Any) -> feedback.Outcome:
        if event.sns_message_id == "sns-3":
            raise RuntimeError("poisoned")
        return real(session, event, settings)

    monkeypatch.setattr(feedback_writer, "apply_event", picky)

    async def go() -> list[Any]:
        return await asyncio.gather(*(writer.apply(e) for e in events), return_exceptions=True)

    results = asyncio.run(go())
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and "poisoned" in str(failed[0])
    assert isinstance(results[3], RuntimeError)
    assert stored(db) == 5
