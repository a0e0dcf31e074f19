"""The rules that protect the list, applied to one SES event inside the caller's transaction.

    Bounce, Permanent                -> suppress (hard_bounce; the subtype, e.g.
                                        OnAccountSuppressionList, is the suppression detail)
    Bounce, Transient / Undetermined -> count; MAILER_SOFT_BOUNCE_LIMIT within
                                        MAILER_SOFT_BOUNCE_WINDOW -> suppress (soft_bounce_limit)
    Delivery                         -> the address's soft-bounce count starts again
    Complaint (not "not-spam")       -> unsubscribe from every list and suppress (complaint)
    Subscription, unsubscribeAll     -> unsubscribe from every list (SES list management)
    Reject, Rendering Failure        -> the matched Delivery row is marked failed
    Send, Open, Click, DeliveryDelay -> stored only

Every event is stored in ``feedback_events`` first; the insert doubles as the idempotency
check (unique SNS MessageId and unique event hash, ``ON CONFLICT DO NOTHING``), so a
redelivered event changes nothing. Events for messages we cannot match to a Delivery row
are stored and counted, never errors. Suppressing and unsubscribing go through
``subscribers.store``, so the consent ledger gets one row per change, with this event
(``ses-feedback:<type>:event#<id>``) as the source.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal, cast

from sqlalchemy import Table, bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.errors import InvalidAddressError
from mailer.feedback.events import (
    BounceInfo,
    ComplaintInfo,
    EventType,
    FailureInfo,
    RejectInfo,
    SESEvent,
    SetupNotice,
    SubscriptionInfo,
    parse_payload,
)
from mailer.feedback.models import FeedbackEvent, SoftBounceCounter
from mailer.feedback.tracking.ses import record_ses_event
from mailer.sending.models import Delivery, DeliveryStatus
from subscribers import store
from subscribers.addresses import normalize_email
from subscribers.models import StoreMeta, Suppression, SuppressionReason, utcnow

__all__ = [
    "Outcome",
    "apply_event",
    "apply_payload",
    "event_hash",
    "feedback_counts",
    "match_delivery",
]

log = logging.getLogger(__name__)

_EVENTS = cast(Table, FeedbackEvent.__table__)
_OPTIONAL_COLUMNS = ("bounce_type", "bounce_subtype", "diagnostic", "complaint_type", "outcome")


@dataclass(frozen=True)
class Outcome:
    """What one event did. ``status`` is "applied", "duplicate" or "notice" (setup message)."""

    status: Literal["applied", "duplicate", "notice"]
    event_type: str
    event_id: int | None = None
    delivery_id: int | None = None
    actions: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return self.delivery_id is not None


@dataclass(frozen=True)
class _Match:
    """The matched Delivery row, as columns (loading the ORM object is for the rare rule)."""

    id: int
    subscriber_id: int | None


@dataclass
class _Context:
    session: Session
    settings: Settings
    event: SESEvent
    event_id: int
    delivery: _Match | None
    addresses: list[str]

    @property
    def actor(self) -> store.Actor:
        return store.Actor(f"ses-feedback:{self.event.type.value}:event#{self.event_id}")


def event_hash(raw: Any) -> str:
    """sha256 of the event JSON with sorted keys: the same event hashes alike on every path."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def apply_payload(
    session: Session, payload: str | bytes | dict[str, Any], settings: Settings
) -> Outcome:
    """Parse (bare event, SNS envelope, SQS body) and apply. The envelope is not verified:
    use this for trusted sources (an authenticated queue, an operator's file)."""
    parsed = parse_payload(payload)
    if isinstance(parsed, SetupNotice):
        log.info("SES/SNS setup message acknowledged: %s %s", parsed.kind, parsed.text[:200])
        return Outcome("notice", parsed.kind)
    return apply_event(session, parsed, settings)


def apply_event(session: Session, event: SESEvent, settings: Settings) -> Outcome:
    """Store the event and apply the rules; a duplicate is recognised and changes nothing."""
    addresses = _addresses(event.recipients)
    delivery = _match(session, event)
    # A reader with a live Subscriber row was not erased: skip the hashing lookup then.
    known = delivery is not None and delivery.subscriber_id is not None and len(addresses) == 1
    erased = not known and _erased(session, addresses)
    event_id = _insert_event(session, event, delivery, addresses, redact=erased)
    if event_id is None:
        return Outcome("duplicate", event.type.value, delivery_id=delivery.id if delivery else None)
    ctx = _Context(session, settings, event, event_id, delivery, addresses)
    actions = _RULES.get(event.type, _store_only)(ctx)
    if delivery is None:
        actions = ["unmatched", *actions]
    if actions:
        session.connection().execute(
            update(_EVENTS).where(_EVENTS.c.id == event_id).values(outcome="; ".join(actions)[:200])
        )
    return Outcome(
        "applied",
        event.type.value,
        event_id=event_id,
        delivery_id=delivery.id if delivery else None,
        actions=tuple(actions),
    )


# -- matching --------------------------------------------------------------------------------


def match_delivery(session: Session, event: SESEvent) -> Delivery | None:
    """The Delivery row this event is about: by SES MessageId, else by our EmailTags.

    The ``delivery`` tag alone can find a row whose MessageId was never recorded (a crash
    between SES accepting and the row being marked); it must agree with the ``campaign``
    tag and must not contradict a recorded MessageId.
    """
    found = _match(session, event)
    return session.get(Delivery, found.id) if found else None


@cache
def _by_message_id() -> Any:
    """Built once, on first use: a constant statement skips SQLAlchemy's per-call work."""
    return (
        select(Delivery.id, Delivery.subscriber_id)
        .where(Delivery.message_id == bindparam("message_id"))
        .limit(1)
    )


@cache
def _insert_statement(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.id)


def _match(session: Session, event: SESEvent) -> _Match | None:
    # Core execution on the session's connection: same transaction, no ORM machinery.
    conn = session.connection()
    row = conn.execute(_by_message_id(), {"message_id": event.ses_message_id}).first()
    if row is not None:
        return _Match(row.id, row.subscriber_id)
    delivery_id = _int_tag(event.delivery_tag)
    if delivery_id is None:
        return None
    tagged = conn.execute(
        select(Delivery.subscriber_id, Delivery.campaign_id, Delivery.message_id).where(
            Delivery.id == delivery_id
        )
    ).first()
    if tagged is None:
        return None
    campaign_id = _int_tag(event.campaign_tag)
    if campaign_id is not None and tagged.campaign_id != campaign_id:
        return None
    if tagged.message_id is not None and tagged.message_id != event.ses_message_id:
        return None
    return _Match(delivery_id, tagged.subscriber_id)


def _int_tag(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


# -- storing ---------------------------------------------------------------------------------


def _insert_event(
    session: Session,
    event: SESEvent,
    delivery: _Match | None,
    addresses: list[str],
    *,
    redact: bool,
) -> int | None:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING id: None means we have seen it."""
    values: dict[str, Any] = {
        "sns_message_id": event.sns_message_id,
        "event_hash": event_hash(event.raw),
        "event_type": event.type.value,
        "ses_message_id": event.ses_message_id[:255],
        "delivery_id": delivery.id if delivery else None,
        "email": None if redact or not addresses else addresses[0],
        "occurred_at": event.occurred_at,
        "received_at": utcnow(),
        "raw": _redacted(event) if redact else dict(event.raw),
        **_columns(event.detail),
    }
    for column in _OPTIONAL_COLUMNS:
        values.setdefault(column, None)
    stmt = _insert_statement(session.get_bind().dialect.name)
    inserted: int | None = session.connection().execute(stmt, values).scalar_one_or_none()
    return inserted


def _columns(detail: object) -> dict[str, Any]:
    if isinstance(detail, BounceInfo):
        first = detail.recipients[0]
        return {
            "bounce_type": detail.bounce_type.value,
            "bounce_subtype": detail.bounce_subtype and detail.bounce_subtype[:64],
            "diagnostic": first.diagnostic_code,
        }
    if isinstance(detail, ComplaintInfo):
        return {"complaint_type": detail.feedback_type and detail.feedback_type[:64]}
    if isinstance(detail, RejectInfo):
        return {"diagnostic": detail.reason}
    if isinstance(detail, FailureInfo):
        return {"diagnostic": detail.error_message}
    return {}


def _redacted(event: SESEvent) -> dict[str, Any]:
    """An erased person's event keeps no address: only what identifies the message."""
    return {
        "redacted": "recipient erased",
        "eventType": event.type.value,
        "mail": {"messageId": event.ses_message_id},
    }


def _dialect_insert(session: Session) -> Callable[..., Any]:
    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


def _addresses(recipients: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in recipients:
        try:
            address = normalize_email(raw)
        except InvalidAddressError as err:
            log.warning("SES event names an address we cannot use: %s", err)
            continue
        if address not in out:
            out.append(address)
    return out


def _erased(session: Session, addresses: list[str]) -> bool:
    if not addresses:
        return False
    salt_row = session.get(StoreMeta, "hash_salt")
    if salt_row is None:  # no salt yet: nothing was ever suppressed, so nobody erased
        return False
    salt = salt_row.value
    hashes = [store.email_hash(salt, a) for a in addresses]
    reasons = session.scalars(
        select(Suppression.reason).where(Suppression.email_hash.in_(hashes))
    ).all()
    return SuppressionReason.ERASED.value in reasons


# -- rules -----------------------------------------------------------------------------------


def _store_only(ctx: _Context) -> list[str]:
    return []


def _tracked(ctx: _Context) -> list[str]:
    """SES's open or click: into tracking's records (``mailer.feedback.tracking.ses``)."""
    if ctx.delivery is None:
        return []
    return record_ses_event(ctx.session, ctx.settings, ctx.event, ctx.delivery.id)


def _bounce(ctx: _Context) -> list[str]:
    detail = ctx.event.detail
    assert isinstance(detail, BounceInfo)
    if detail.permanent:
        return [_hard_bounce(ctx, address, detail) for address in ctx.addresses]
    return [_soft_bounce(ctx, address) for address in ctx.addresses]


def _hard_bounce(ctx: _Context, address: str, detail: BounceInfo) -> str:
    diagnostic = next((r.diagnostic_code for r in detail.recipients if r.diagnostic_code), None)
    if detail.on_account_suppression_list or not diagnostic:
        note = detail.bounce_subtype or "Permanent"
    else:
        note = f"{detail.bounce_subtype or 'Permanent'}: {diagnostic}"
    _suppress(ctx, address, SuppressionReason.HARD_BOUNCE, detail=note[:1000])
    return f"suppressed:hard_bounce:{address}"


def _suppress(ctx: _Context, address: str, reason: str, *, detail: str) -> None:
    """store.suppress in a savepoint: when another worker suppressed the same address a
    moment ago (PostgreSQL, concurrent events), its row stands and ours is not needed."""
    try:
        with ctx.session.begin_nested():
            store.suppress(ctx.session, address, reason, actor=ctx.actor, detail=detail)
    except IntegrityError:
        if store.find_suppression(ctx.session, address) is None:
            raise


def _soft_bounce(ctx: _Context, address: str) -> str:
    limit = ctx.settings.soft_bounce_limit
    count = _count_soft_bounce(
        ctx.session, address, ctx.event.occurred_at, ctx.settings.soft_bounce_window
    )
    if limit > 0 and count >= limit:
        days = ctx.settings.soft_bounce_window / 86400
        _suppress(
            ctx,
            address,
            SuppressionReason.SOFT_BOUNCE_LIMIT,
            detail=f"{count} soft bounces within {days:g} days",
        )
        ctx.session.execute(delete(SoftBounceCounter).where(SoftBounceCounter.email == address))
        return f"suppressed:soft_bounce_limit:{address}"
    return f"soft:{count}/{limit}:{address}"


def _count_soft_bounce(session: Session, address: str, at: datetime, window: float) -> int:
    """Atomic upsert: +1 inside the window that opened at the first bounce, else restart."""
    table = SoftBounceCounter.__table__
    col = table.c
    cutoff = at - timedelta(seconds=window)
    insert = _dialect_insert(session)(table).values(
        email=address, count=1, window_started_at=at, last_bounce_at=at
    )
    in_window = col.window_started_at >= cutoff
    stmt = insert.on_conflict_do_update(
        index_elements=[col.email],
        set_={
            "count": case((in_window, col.count + 1), else_=1),
            "window_started_at": case(
                (in_window, col.window_started_at), else_=insert.excluded.window_started_at
            ),
            "last_bounce_at": case(
                (col.last_bounce_at > at, col.last_bounce_at),
                else_=insert.excluded.last_bounce_at,
            ),
        },
    ).returning(col.count)
    return int(session.execute(stmt).scalar_one())


@cache
def _reset_statement() -> Any:
    counters = cast(Table, SoftBounceCounter.__table__)
    return delete(counters).where(
        counters.c.email == bindparam("email"),
        counters.c.last_bounce_at <= bindparam("at", type_=counters.c.last_bounce_at.type),
    )


def _delivery(ctx: _Context) -> list[str]:
    actions = []
    conn = ctx.session.connection()
    for address in ctx.addresses:
        result = conn.execute(_reset_statement(), {"email": address, "at": ctx.event.occurred_at})
        if result.rowcount:
            actions.append(f"reset:{address}")
    return actions


def _complaint(ctx: _Context) -> list[str]:
    detail = ctx.event.detail
    assert isinstance(detail, ComplaintInfo)
    if detail.not_spam:
        return ["ignored:not-spam"]
    actions = []
    for address in ctx.addresses:
        actions += _unsubscribe_everywhere(ctx, address)
        _suppress(
            ctx,
            address,
            SuppressionReason.COMPLAINT,
            detail=f"complaintFeedbackType={detail.feedback_type or 'unspecified'}",
        )
        actions.append(f"suppressed:complaint:{address}")
    return actions


def _subscription(ctx: _Context) -> list[str]:
    detail = ctx.event.detail
    assert isinstance(detail, SubscriptionInfo)
    if not detail.unsubscribe_all:
        return []
    actions: list[str] = []
    for address in ctx.addresses:
        actions += _unsubscribe_everywhere(ctx, address)
    return actions


def _unsubscribe_everywhere(ctx: _Context, address: str) -> list[str]:
    subscriber = store.find_subscriber(ctx.session, address)
    subscriber_id = subscriber.id if subscriber else None
    if subscriber_id is None and ctx.delivery is not None:
        subscriber_id = ctx.delivery.subscriber_id
    if subscriber_id is None:
        return []
    changed = store.unsubscribe(ctx.session, subscriber_id, None, actor=ctx.actor)
    return [f"unsubscribed:{len(changed)} list(s):{address}"] if changed else []


def _mark_failed(ctx: _Context) -> list[str]:
    row = ctx.session.get(Delivery, ctx.delivery.id) if ctx.delivery else None
    if row is None or row.status == DeliveryStatus.FAILED:
        return []
    detail = ctx.event.detail
    if isinstance(detail, RejectInfo):
        error_class, error = "ses_reject", detail.reason or "rejected by SES"
    else:
        assert isinstance(detail, FailureInfo)
        error_class, error = "ses_rendering_failure", detail.error_message
    row.status = DeliveryStatus.FAILED.value
    row.error_class = error_class
    row.error = error
    return [f"delivery#{row.id}:failed"]


_RULES: dict[EventType, Callable[[_Context], list[str]]] = {
    EventType.BOUNCE: _bounce,
    EventType.DELIVERY: _delivery,
    EventType.COMPLAINT: _complaint,
    EventType.SUBSCRIPTION: _subscription,
    EventType.REJECT: _mark_failed,
    EventType.RENDERING_FAILURE: _mark_failed,
    EventType.OPEN: _tracked,
    EventType.CLICK: _tracked,
}


# -- ops ---------------------------------------------------------------------------------------


def feedback_counts(session: Session) -> dict[str, dict[str, int]]:
    """Events stored per type, and how many of them matched no Delivery row."""
    rows = session.execute(
        select(
            FeedbackEvent.event_type,
            func.count(),
            func.count(FeedbackEvent.delivery_id),
        ).group_by(FeedbackEvent.event_type)
    ).all()
    return {kind: {"total": total, "unmatched": total - matched} for kind, total, matched in rows}
