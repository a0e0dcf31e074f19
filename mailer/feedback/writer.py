"""The SES webhook's group-commit writer: events from concurrent requests share a
transaction (the machinery is :class:`mailer.feedback.group_commit.GroupWriter`).

Each request hands its verified event to :meth:`FeedbackWriter.apply` and awaits the
outcome; nothing is answered before the commit, so a 200 still means "stored". If anything
in a batch fails, each event is applied again on its own, so one bad event fails only its
own request (which answers 500 and is retried by SNS).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.feedback.events import SESEvent
from mailer.feedback.group_commit import GroupWriter
from mailer.feedback.rules import Outcome, apply_event

__all__ = ["FeedbackWriter", "GroupWriter"]


class FeedbackWriter(GroupWriter[SESEvent, Outcome]):
    """The SES webhook's writer: each event through the rules (``apply_event``)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        threads: int | None = None,
        batch: int = 64,
    ) -> None:
        self.settings = settings

        def write(session: Session, events: Sequence[SESEvent]) -> list[Outcome]:
            return [apply_event(session, event, settings) for event in events]

        super().__init__(
            sessions,
            write,
            threads=threads,
            batch=batch,
            name="feedback-writer",
            describe=lambda event: f"SES event {event.sns_message_id}",
        )
