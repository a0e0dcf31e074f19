"""Operations on the subscriber store: lists, subscribe, confirm, unsubscribe, suppress,
erase, export, and the GDPR access view.

Every function takes a Session and leaves the transaction to the caller, so a web request,
a feedback event or a CLI command commits its whole effect at once. Every change of what a
person agreed to writes a ConsentEvent.

Over 500 lines on purpose: every consent change and its ledger row stay in one module.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.utils import formataddr, getaddresses
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from mailer.errors import (
    ConflictError,
    InputError,
    InvalidAddressError,
    NotFoundError,
    SuppressedError,
)
from subscribers import csv_guard, outbox
from subscribers.addresses import clean_name, normalize_email
from subscribers.models import (
    ConsentEvent,
    MailingList,
    StoreMeta,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from subscribers.pg_options import insert_for

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
Status = SubscriptionStatus


@dataclass(frozen=True)
class Actor:
    """Who or what caused a change, for the consent ledger."""

    source: str
    ip: str | None = None
    user_agent: str | None = None


CLI = Actor("cli")


# -- hashing (erasure tombstones, suppression keys) ---------------------------------------


def hash_salt(session: Session) -> str:
    """The store's random salt, created on first use and never changed."""
    row = session.get(StoreMeta, "hash_salt")
    if row is not None:
        return row.value
    # several writers may start on a new store at once: the first insert wins
    make = insert_for(session)
    session.execute(
        make(StoreMeta)
        .values(key="hash_salt", value=secrets.token_hex(16))
        .on_conflict_do_nothing(index_elements=["key"])
    )
    value = session.scalar(select(StoreMeta.value).where(StoreMeta.key == "hash_salt"))
    assert value is not None
    return value


def email_hash(salt: str, email: str) -> str:
    return hashlib.sha256(f"{salt}:{email}".encode()).hexdigest()


# -- lists ---------------------------------------------------------------------------------


#: line breaks to str.splitlines, so to parseaddr and the email package, beyond C0/C1
UNICODE_LINE_BREAKS = "\u2028\u2029"


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or 127 <= ord(ch) < 160 or ch in UNICODE_LINE_BREAKS for ch in text)


def parse_from(text: str) -> str:
    """Validate a From header value ("Name <addr>" or "addr") and return it normalized."""
    if _has_control(text):  # the address parser would quietly keep only the part after a line break
        raise InvalidAddressError(
            f"From address contains a line break or control character: {text!r}"
        )
    found = getaddresses([text])  # parseaddr would quietly keep the first of several
    if len(found) != 1:
        raise InvalidAddressError(
            f"not one From address: {text!r} (use 'Name <addr@domain>'; quote a name with"
            " a comma or an @ in it)"
        )
    name, addr = found[0]
    if not addr or "@" not in addr:
        raise InvalidAddressError(f"not a From address: {text!r} (use 'Name <addr@domain>')")
    return formataddr((name, normalize_email(addr))) if name else normalize_email(addr)


def create_list(
    session: Session,
    slug: str,
    *,
    name: str,
    from_address: str,
    reply_to: str | None = None,
    double_opt_in: bool = True,
) -> MailingList:
    if not SLUG.match(slug):
        raise InputError(
            f"bad list slug {slug!r}: use lowercase letters, digits and '-', up to 64 characters"
        )
    if not name.strip():
        raise InputError("a list needs a non-empty --name")
    if _has_control(name):  # the name goes into every message's List-Id header
        raise InputError(f"list name contains a line break or control character: {name!r}")
    if session.scalar(select(MailingList.id).where(MailingList.slug == slug)) is not None:
        raise ConflictError(f"list {slug!r} already exists")
    mlist = MailingList(
        slug=slug,
        name=name.strip(),
        from_address=parse_from(from_address),
        reply_to=normalize_email(reply_to) if reply_to else None,
        double_opt_in=double_opt_in,
    )
    session.add(mlist)
    session.flush()
    return mlist


def get_list(session: Session, slug: str) -> MailingList:
    mlist = session.scalar(select(MailingList).where(MailingList.slug == slug))
    if mlist is None:
        known = ", ".join(session.scalars(select(MailingList.slug).order_by(MailingList.slug)))
        raise NotFoundError(f"no list {slug!r}" + (f" (lists: {known})" if known else ""))
    return mlist


def list_counts(session: Session) -> list[tuple[MailingList, dict[str, int]]]:
    """Every list with its subscription counts by status."""
    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(Subscription.list_id, Subscription.status, func.count()).group_by(
            Subscription.list_id, Subscription.status
        )
    )
    for list_id, status, n in rows:
        counts.setdefault(list_id, {})[status] = n
    lists = session.scalars(select(MailingList).order_by(MailingList.slug))
    return [(m, counts.get(m.id, {})) for m in lists]


# -- subscribers ---------------------------------------------------------------------------


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == normalize_email(email)))


def get_subscriber(session: Session, email: str) -> Subscriber:
    sub = find_subscriber(session, email)
    if sub is None:
        raise NotFoundError(f"no subscriber {email!r}")
    return sub


def find_suppression(session: Session, email: str) -> Suppression | None:
    """The suppression (or erasure tombstone) for a normalized address, if any."""
    return session.scalar(
        select(Suppression).where(Suppression.email_hash == email_hash(hash_salt(session), email))
    )


def record(
    session: Session,
    action: str,
    actor: Actor,
    *,
    subscriber_id: int | None = None,
    list_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one row to the consent ledger."""
    session.add(
        ConsentEvent(
            subscriber_id=subscriber_id,
            list_id=list_id,
            action=action,
            source=actor.source[:200],
            ip=actor.ip,
            user_agent=(actor.user_agent or None) and actor.user_agent[:400],
            detail=detail,
        )
    )


@dataclass(frozen=True)
class SubscribeResult:
    subscription: Subscription
    subscriber: Subscriber
    created: bool
    #: True when a confirmation mail should go out (double opt-in, now pending).
    needs_confirmation: bool


def subscribe(
    session: Session,
    email: str,
    mlist: MailingList,
    *,
    actor: Actor = CLI,
    name: str | None = None,
    confirmed: bool = False,
    resubscribe: bool = False,
    self_service: bool = False,
) -> SubscribeResult:
    """Subscribe ``email`` to ``mlist``.

    Operator: ``confirmed`` (they vouch for consent) or a list without double opt-in makes
    the subscription active at once, otherwise it is pending until confirmed; a suppressed,
    erased or unsubscribed address is refused unless ``resubscribe``, which lifts a
    suppression only with a subscription active at once: a pending one keeps it until its
    confirmation (a suppression covers every list, some of which may still be active).

    ``self_service`` (the person asked, through a form or one of our links): a new
    subscription to a single opt-in list starts active; coming back after an unsubscribe, or
    while suppressed, always starts a fresh double opt-in (pending, a confirmation mail is
    due), and the suppression lifts only when that mail is confirmed
    (docs/architecture.md principle 9). ``name`` follows :func:`addresses.clean_name`.
    """
    address = normalize_email(email)
    name = clean_name(name)
    suppression = find_suppression(session, address)
    if suppression is not None and not (resubscribe or self_service):
        what = "erased" if suppression.reason == SuppressionReason.ERASED else "suppressed"
        raise SuppressedError(
            f"{address} is {what} ({suppression.reason}); pass --resubscribe to override"
        )
    sub = session.scalar(select(Subscriber).where(Subscriber.email == address))
    created = sub is None
    if sub is None:
        sub = Subscriber(email=address, name=name or None, attributes={})
        session.add(sub)
        session.flush()
    elif name:
        sub.name = name
    active_now = confirmed or not mlist.double_opt_in
    if suppression is not None and resubscribe and active_now:
        unsuppress(session, address, actor=actor)
        record(session, "resubscribe", actor, subscriber_id=sub.id, list_id=mlist.id)
        suppression = None
    subn = session.scalar(
        select(Subscription).where(
            Subscription.subscriber_id == sub.id, Subscription.list_id == mlist.id
        )
    )
    previous = subn.status if subn is not None else None
    if previous == Status.UNSUBSCRIBED and not (resubscribe or self_service):
        raise SuppressedError(
            f"{address} unsubscribed from {mlist.slug}; pass --resubscribe to override"
        )
    if subn is None:
        subn = Subscription(
            subscriber_id=sub.id,
            list_id=mlist.id,
            source=actor.source[:64],
            status=Status.PENDING,
            consent_version=0,
        )
        session.add(subn)
    if self_service and not resubscribe:
        if previous == Status.UNSUBSCRIBED or suppression is not None:
            _set_status(subn, Status.PENDING)  # a fresh double opt-in, whatever the list
        elif subn.status != Status.ACTIVE and active_now:
            _activate(subn)
    elif subn.status != Status.ACTIVE:
        if active_now:
            _activate(subn)
        else:
            _set_status(subn, Status.PENDING)
    record(
        session,
        "subscribe",
        actor,
        subscriber_id=sub.id,
        list_id=mlist.id,
        detail={"status": subn.status, "confirmed_by_operator": confirmed},
    )
    if subn.status == Status.ACTIVE and previous != Status.ACTIVE:
        _emit_subscriber(session, "subscriber.confirmed", sub.id, mlist.id, actor)
    session.flush()
    return SubscribeResult(subn, sub, created, subn.status == Status.PENDING)


def _set_status(subn: Subscription, status: Status) -> None:
    """Every status change goes through here: it bumps ``consent_version``, which retires
    every confirm link sent before the change."""
    if subn.status == status:
        return
    subn.status = status
    subn.consent_version = (subn.consent_version or 0) + 1
    if status == Status.UNSUBSCRIBED:
        subn.unsubscribed_at = utcnow()
    elif status == Status.PENDING:
        subn.unsubscribed_at = None


def _activate(subn: Subscription) -> None:
    _set_status(subn, Status.ACTIVE)
    subn.confirmed_at = utcnow()
    subn.unsubscribed_at = None


class ConfirmOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    #: this very link confirmed it already (a second press of the button): nothing changed
    ALREADY = "already"


def confirm(
    session: Session, subscriber_id: int, list_id: int, *, version: int, actor: Actor
) -> ConfirmOutcome:
    """Double opt-in: the pending subscription at ``version`` (the one the confirm link was
    sent for) becomes active, and a suppression of the address lifts (the person confirmed
    themselves). Each link works once: confirming bumps the version, and so does any later
    unsubscribe or new opt-in. A stale link raises ConflictError and changes nothing.

    The database decides (docs/architecture.md principle 10): one conditional UPDATE moves
    the row only if it is still pending at ``version``, so a press racing an unsubscribe, or
    the same link pressed twice at once, cannot act on what it read before the other
    committed."""
    subn = session.scalar(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber_id, Subscription.list_id == list_id
        )
    )
    if subn is None:
        raise NotFoundError("no such subscription (it may have been erased)")
    if not _activate_if_pending(session, subn, version):
        now = session.execute(  # what the change that got there first left
            select(Subscription.status, Subscription.consent_version).where(
                Subscription.id == subn.id
            )
        ).one_or_none()
        if now is None:
            raise NotFoundError("no such subscription (it may have been erased)")
        if tuple(now) == (Status.ACTIVE, version + 1):
            return ConfirmOutcome.ALREADY
        raise ConflictError("this confirmation link was used, or a later change replaced it")
    sub = session.get(Subscriber, subscriber_id)
    assert sub is not None
    unsuppress(session, sub.email, actor=actor)
    record(session, "confirm", actor, subscriber_id=subscriber_id, list_id=list_id)
    _emit_subscriber(session, "subscriber.confirmed", subscriber_id, list_id, actor)
    session.flush()
    return ConfirmOutcome.CONFIRMED


def _emit_subscriber(
    session: Session, type_: str, subscriber_id: int, list_id: int, actor: Actor
) -> None:
    """The webhook event of a subscription change, in its transaction (nothing is looked
    up unless an endpoint wants it)."""
    if not outbox.wanted(session, type_):
        return
    slug = session.scalar(select(MailingList.slug).where(MailingList.id == list_id))
    email = session.scalar(select(Subscriber.email).where(Subscriber.id == subscriber_id))
    data = {"subscriber_id": subscriber_id, "email": email, "list": slug, "source": actor.source}
    outbox.emit(session, type_, data, email=email)


def _activate_if_pending(session: Session, subn: Subscription, version: int) -> bool:
    """Pending at ``version`` -> active (as :func:`_activate`), in one UPDATE whose WHERE
    the database checks at write time; False when another change got there first."""
    done = session.execute(
        update(Subscription)
        .where(
            Subscription.id == subn.id,
            Subscription.status == Status.PENDING,
            Subscription.consent_version == version,
        )
        .values(
            status=Status.ACTIVE,
            consent_version=version + 1,
            confirmed_at=utcnow(),
            unsubscribed_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(done, CursorResult)
    if done.rowcount != 1:
        return False
    session.refresh(subn)
    return True


def unsubscribe(
    session: Session, subscriber_id: int, list_id: int | None, *, actor: Actor
) -> list[Subscription]:
    """Unsubscribe from one list, or from every list when ``list_id`` is None. Idempotent."""
    query = select(Subscription).where(Subscription.subscriber_id == subscriber_id)
    if list_id is not None:
        query = query.where(Subscription.list_id == list_id)
    changed = []
    for subn in session.scalars(query):
        if subn.status != Status.UNSUBSCRIBED:
            _set_status(subn, Status.UNSUBSCRIBED)
            record(session, "unsubscribe", actor, subscriber_id=subscriber_id, list_id=subn.list_id)
            _emit_subscriber(session, "subscriber.unsubscribed", subscriber_id, subn.list_id, actor)
            changed.append(subn)
    session.flush()
    return changed


# -- suppression ---------------------------------------------------------------------------


def suppress(
    session: Session,
    email: str,
    reason: str,
    *,
    actor: Actor = CLI,
    detail: str | None = None,
) -> Suppression:
    """Put an address on the suppression list (idempotent: the first reason stays)."""
    if reason not in {r.value for r in SuppressionReason}:
        allowed = ", ".join(r.value for r in SuppressionReason)
        raise InputError(f"unknown suppression reason {reason!r} (one of: {allowed})")
    address = normalize_email(email)
    existing = find_suppression(session, address)
    if existing is not None:
        return existing
    row = Suppression(
        email_hash=email_hash(hash_salt(session), address),
        email=address,
        reason=reason,
        detail=detail,
    )
    session.add(row)
    sub_id = session.scalar(select(Subscriber.id).where(Subscriber.email == address))
    record(session, "suppress", actor, subscriber_id=sub_id, detail={"reason": reason})
    data = {"email": address, "reason": reason, "source": actor.source}
    outbox.emit(session, "suppression.added", data, email=address)
    session.flush()
    return row


def unsuppress(session: Session, email: str, *, actor: Actor = CLI) -> bool:
    """Remove an address from the suppression list; False if it was not there. The DELETE
    says whether this call removed it, so two lifting at once record one ``unsuppress``."""
    address = normalize_email(email)
    row = find_suppression(session, address)
    if row is None:
        return False
    reason = row.reason
    gone = session.execute(
        delete(Suppression)
        .where(Suppression.id == row.id)
        .execution_options(synchronize_session=False)
    )
    session.expunge(row)
    assert isinstance(gone, CursorResult)
    if gone.rowcount != 1:
        return False
    sub_id = session.scalar(select(Subscriber.id).where(Subscriber.email == address))
    record(session, "unsuppress", actor, subscriber_id=sub_id, detail={"was": reason})
    data = {"email": address, "was": reason, "source": actor.source}
    outbox.emit(session, "suppression.removed", data, email=address)
    session.flush()
    return True


def list_suppressions(
    session: Session, *, search: str | None = None, limit: int = 100, offset: int = 0
) -> Sequence[Suppression]:
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if search:
        query = query.where(Suppression.email.contains(search.strip().lower(), autoescape=True))
    return session.scalars(query.limit(limit).offset(offset)).all()


# -- erasure and access --------------------------------------------------------------------


def erase(session: Session, email: str, *, actor: Actor = CLI) -> None:
    """GDPR erasure, the store's part: delete everything the store holds about the person;
    keep only a salted-hash tombstone so a later import of the address is refused unless
    --resubscribe. Entrances call :func:`mailer.feedback.erasure.erase`, which also scrubs
    the address from stored feedback events."""
    address = normalize_email(email)
    digest = email_hash(hash_salt(session), address)
    sub = session.scalar(select(Subscriber).where(Subscriber.email == address))
    tomb = session.scalar(select(Suppression).where(Suppression.email_hash == digest))
    if sub is None and tomb is None:
        raise NotFoundError(f"nothing is held about {address}")
    if sub is not None:
        session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_id == sub.id))
        session.delete(sub)
    if tomb is None:
        session.add(Suppression(email_hash=digest, email=None, reason=SuppressionReason.ERASED))
    else:
        tomb.email, tomb.reason, tomb.detail = None, SuppressionReason.ERASED, None
    session.add(ConsentEvent(email_hash=digest, action="erase", source=actor.source[:200]))
    # earlier events keep their type and time, not the person; this one names no one
    outbox.redact_address(session, address)
    erased = {"subscriber_id": sub and sub.id, "source": actor.source}
    outbox.emit(session, "subscriber.erased", erased)
    session.flush()


def describe_subscriber(session: Session, email: str) -> dict[str, Any]:
    """Everything held about one person (GDPR access request), JSON-ready."""
    sub = get_subscriber(session, email)
    lists = {m.id: m.slug for m in session.scalars(select(MailingList))}
    supp = find_suppression(session, sub.email)
    events = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.subscriber_id == sub.id)
        .order_by(ConsentEvent.created_at, ConsentEvent.id)
    )
    return {
        "email": sub.email,
        "name": sub.name,
        "attributes": sub.attributes,
        "time_zone": sub.time_zone,
        "created_at": sub.created_at.isoformat(),
        "subscriptions": [
            {
                "list": lists.get(s.list_id),
                "status": s.status,
                "source": s.source,
                "created_at": s.created_at.isoformat(),
                "confirmed_at": s.confirmed_at and s.confirmed_at.isoformat(),
                "unsubscribed_at": s.unsubscribed_at and s.unsubscribed_at.isoformat(),
            }
            for s in sub.subscriptions
        ],
        "suppression": supp and {"reason": supp.reason, "since": supp.created_at.isoformat()},
        "consent_events": [
            {
                "action": e.action,
                "list": lists.get(e.list_id) if e.list_id else None,
                "source": e.source,
                "ip": e.ip,
                "user_agent": e.user_agent,
                "detail": e.detail,
                "at": e.created_at.isoformat(),
            }
            for e in events
        ],
    }


# -- export --------------------------------------------------------------------------------


def csv_safe(value: str) -> str:
    """Neutralize spreadsheet formulas (CSV injection): the importer takes the guard off."""
    return csv_guard.guard(value)


EXPORT_COLUMNS = ("email", "name", "status", "since", "time_zone")
"""The export's header row: ``time_zone`` as the import reads it, so a reader's zone
survives export -> import (empty: the reader has none and follows the list's)."""


def export_rows(
    session: Session, mlist: MailingList, status: str | None = None
) -> Iterator[tuple[str, str, str, str, str]]:
    """Stream one row per reader (:data:`EXPORT_COLUMNS`) for a list, in constant memory."""
    if status is not None and status not in {s.value for s in Status}:
        raise InputError(f"unknown status {status!r} (active, pending or unsubscribed)")
    query = (
        select(
            Subscriber.email,
            Subscriber.name,
            Subscription.status,
            Subscription.created_at,
            Subscriber.time_zone,
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.list_id == mlist.id)
        .order_by(Subscriber.id)
        .execution_options(yield_per=2000)
    )
    if status is not None:
        query = query.where(Subscription.status == status)
    for email, name, st, since, zone in session.execute(query):
        yield csv_safe(email), csv_safe(name or ""), st, since.isoformat(), csv_safe(zone or "")
