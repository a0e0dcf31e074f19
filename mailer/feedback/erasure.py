"""GDPR erasure of one person, everywhere we hold them.

The store deletes the subscriber and their consent history and keeps a salted-hash
tombstone (:func:`subscribers.store.erase`); the feedback loop's stored events and
soft-bounce counters name the address too. :func:`erase` composes the two in the caller's
transaction. It lives here, above the store, so the store never imports the layer above it
(it used to reach up for :func:`forget_address` from inside a function).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailer.feedback.models import FeedbackEvent, SoftBounceCounter
from subscribers import store
from subscribers.addresses import normalize_email

__all__ = ["erase", "forget_address"]


def erase(session: Session, email: str, *, actor: store.Actor = store.CLI) -> None:
    """Erase everything held about ``email``: NotFoundError when nothing is."""
    address = normalize_email(email)
    store.erase(session, address, actor=actor)
    forget_address(session, address)


def forget_address(session: Session, email: str) -> None:
    """Drop the soft-bounce counter and the address (and payload) from stored events."""
    address = normalize_email(email)
    session.execute(delete(SoftBounceCounter).where(SoftBounceCounter.email == address))
    for row in session.scalars(select(FeedbackEvent).where(FeedbackEvent.email == address)):
        row.email = None
        row.diagnostic = None
        row.raw = {
            "redacted": "recipient erased",
            "eventType": row.event_type,
            "mail": {"messageId": row.ses_message_id},
        }
    session.flush()
