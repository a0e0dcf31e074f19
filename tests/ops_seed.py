"""A small ledger with known figures, for the stats, admin and metrics tests.

Everything is placed relative to ``now`` so the same data serves a fixed clock (stats) and
the real clock (dashboard, /metrics). The table below is the truth the tests assert against;
counts in the tests are derived from it by hand, not by running the code under test.

Campaign 1 "Issue one" (done, created now-2d-1h, every send at now-2d), list ``brief``:

    row  reader            delivery  sent  events
    1    a1@gmail.com      sent      yes   Delivery, Open, Click
    2    a2@gmail.com      sent      yes   Delivery, Open, Click
    3-5  a3..a5@gmail.com  sent      yes   Delivery, Open
    6    a6@gmail.com      sent      yes   Delivery, Complaint (abuse); unsubscribed now-1d
    7    a7@gmail.com      sent      yes   Delivery, Complaint (not-spam: not counted)
    8    a8@gmail.com      sent      yes   Bounce Permanent (550 5.1.1)
    9    a9@gmail.com      sent      yes   Delivery; unsubscribed now-1d
    10   a10@gmail.com     sent      yes   Delivery; unsubscribed now-3d (before the send)
    11-13 b1..b3@outlook   sent      yes   Delivery
    14   b4@outlook.com    sent      yes   Bounce Permanent, twice (one row)
    15   b5@outlook.com    failed    yes   Reject
    16   b6@outlook.com    failed    no    -
    17   c1@example.net    sent      yes   Bounce Transient
    18-19 c2,c3@example.net sent     yes   Delivery
    20   (erased)          skipped   no    -

Campaign 2 "Issue two" (sending, created now-3h, sends at now-1h): a1, a2 (Delivery),
b1 (Bounce Transient), e1@yahoo.com sent; e2..e6@yahoo.com queued; e7@yahoo.com sending.

Campaign 3 "Issue zero" (done, created and sent now-40d): f1..f5@gmail.com sent, f1 hard
bounce, f2..f5 Delivery.

One Bounce event that matches no row (received now-1h).

Suppressions: hard_bounce and complaint at now, manual at now-1d, soft_bounce_limit at
now-3d, manual at now-40d; one ``unsuppress`` consent event at now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from mailer.feedback.models import FeedbackEvent
from mailer.sending.models import Campaign, Delivery
from subscribers import store
from subscribers.models import (
    ConsentEvent,
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
)


@dataclass
class Seeded:
    now: datetime
    list_id: int
    c1: int
    c2: int
    c3: int
    deliveries: dict[tuple[int, str], int]  # (campaign, email) -> delivery id


class _Seeder:
    def __init__(self, session: Session, now: datetime) -> None:
        self.s = session
        self.now = now
        self.subs: dict[str, Subscriber] = {}
        self.deliveries: dict[tuple[int, str], int] = {}
        self.mlist = MailingList(
            slug="brief", name="The Brief", from_address="Brief <brief@example.org>"
        )
        session.add(self.mlist)
        session.flush()

    def subscriber(self, email: str, *, unsubscribed_at: datetime | None = None) -> Subscriber:
        sub = self.subs.get(email)
        if sub is None:
            sub = Subscriber(email=email, attributes={}, created_at=self.now - timedelta(days=90))
            self.s.add(sub)
            self.s.flush()
            self.s.add(
                Subscription(
                    subscriber_id=sub.id,
                    list_id=self.mlist.id,
                    status="unsubscribed" if unsubscribed_at else "active",
                    created_at=self.now - timedelta(days=90),
                    confirmed_at=self.now - timedelta(days=90),
                    unsubscribed_at=unsubscribed_at,
                )
            )
            self.subs[email] = sub
        return sub

    def campaign(self, subject: str, status: str, created: datetime) -> Campaign:
        c = Campaign(
            list_id=self.mlist.id,
            issue_key=subject.lower().replace(" ", "-"),
            subject=subject,
            issue={},
            html="<p>x</p>",
            text="x",
            status=status,
            created_at=created,
            started_at=created + timedelta(minutes=5) if status != "scheduled" else None,
            finished_at=created + timedelta(hours=1) if status == "done" else None,
        )
        self.s.add(c)
        self.s.flush()
        return c

    def delivery(
        self,
        campaign: Campaign,
        email: str | None,
        status: str,
        sent_at: datetime | None,
        **extra: Any,
    ) -> Delivery:
        sub = self.subscriber(email, **extra) if email else None
        d = Delivery(
            campaign_id=campaign.id,
            subscriber_id=sub.id if sub else None,
            status=status,
            sent_at=sent_at,
            attempts=1 if status != "queued" else 0,
            message_id=f"ses-{uuid.uuid4().hex}" if sent_at else None,
            error_class="rejected" if status == "failed" else None,
        )
        self.s.add(d)
        self.s.flush()
        if email:
            self.deliveries[(campaign.id, email)] = d.id
        return d

    def event(
        self,
        event_type: str,
        delivery: Delivery | None,
        email: str,
        received: datetime,
        **columns: Any,
    ) -> None:
        self.s.add(
            FeedbackEvent(
                sns_message_id=str(uuid.uuid4()),
                event_hash=uuid.uuid4().hex + uuid.uuid4().hex,
                event_type=event_type,
                ses_message_id=(delivery.message_id if delivery else None) or "unknown-id",
                delivery_id=delivery.id if delivery else None,
                email=email,
                occurred_at=received - timedelta(minutes=1),
                received_at=received,
                raw={"eventType": event_type},
                **columns,
            )
        )

    def suppression(self, email: str, reason: str, at: datetime) -> None:
        digest = store.email_hash(store.hash_salt(self.s), email)
        self.s.add(Suppression(email_hash=digest, email=email, reason=reason, created_at=at))


HARD_550 = "smtp; 550 5.1.1 user unknown"
HARD_OUTLOOK = "smtp; 550 5.5.0 Requested action not taken: mailbox unavailable"


def seed(session: Session, now: datetime) -> Seeded:
    """Write the ledger above and flush it (the caller commits)."""
    x = _Seeder(session, now)
    day = timedelta(days=1)
    hard = {"bounce_type": "Permanent", "bounce_subtype": "General"}
    soft = {"bounce_type": "Transient", "bounce_subtype": "MailboxFull"}

    c1 = x.campaign("Issue one", "done", now - 2 * day - timedelta(hours=1))
    sent1 = now - 2 * day
    got1 = now - 2 * day + timedelta(hours=1)
    rows: dict[int, Delivery] = {}
    for i in range(1, 11):
        email = f"a{i}@gmail.com"
        unsub = {6: now - day, 9: now - day, 10: now - 3 * day}.get(i)
        rows[i] = x.delivery(c1, email, "sent", sent1, unsubscribed_at=unsub)
    for i in range(1, 7):
        status = "failed" if i in (5, 6) else "sent"
        rows[10 + i] = x.delivery(c1, f"b{i}@outlook.com", status, None if i == 6 else sent1)
    for i in range(1, 4):
        rows[16 + i] = x.delivery(c1, f"c{i}@example.net", "sent", sent1)
    rows[20] = x.delivery(c1, None, "skipped", None)

    for i in (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 18, 19):
        x.event("Delivery", rows[i], _email_of(rows[i], x), got1)
    for i in (1, 2, 3, 4, 5):
        x.event("Open", rows[i], _email_of(rows[i], x), got1 + timedelta(minutes=5))
    for i in (1, 2):
        x.event("Click", rows[i], _email_of(rows[i], x), got1 + timedelta(minutes=6))
    x.event("Complaint", rows[6], "a6@gmail.com", got1, complaint_type="abuse")
    x.event("Complaint", rows[7], "a7@gmail.com", got1, complaint_type="not-spam")
    x.event("Bounce", rows[8], "a8@gmail.com", got1, diagnostic=HARD_550, **hard)
    x.event("Bounce", rows[14], "b4@outlook.com", got1, diagnostic=HARD_OUTLOOK, **hard)
    x.event(
        "Bounce",
        rows[14],
        "b4@outlook.com",
        got1 + timedelta(minutes=2),
        diagnostic=HARD_OUTLOOK,
        **hard,
    )
    x.event("Reject", rows[15], "b5@outlook.com", got1, diagnostic="Bad content")
    x.event("Bounce", rows[17], "c1@example.net", got1, diagnostic="smtp; 452 4.2.2", **soft)

    c2 = x.campaign("Issue two", "sending", now - timedelta(hours=3))
    sent2 = now - timedelta(hours=1)
    got2 = now - timedelta(minutes=30)
    d21 = x.delivery(c2, "a1@gmail.com", "sent", sent2)
    d22 = x.delivery(c2, "a2@gmail.com", "sent", sent2)
    d23 = x.delivery(c2, "b1@outlook.com", "sent", sent2)
    x.delivery(c2, "e1@yahoo.com", "sent", sent2)
    for i in range(2, 7):
        x.delivery(c2, f"e{i}@yahoo.com", "queued", None)
    x.delivery(c2, "e7@yahoo.com", "sending", None)
    x.event("Delivery", d21, "a1@gmail.com", got2)
    x.event("Delivery", d22, "a2@gmail.com", got2)
    x.event("Bounce", d23, "b1@outlook.com", got2, diagnostic="smtp; 421 4.7.0 try later", **soft)

    c3 = x.campaign("Issue zero", "done", now - 40 * day)
    sent3 = now - 40 * day + timedelta(minutes=10)
    old = {i: x.delivery(c3, f"f{i}@gmail.com", "sent", sent3) for i in range(1, 6)}
    x.event(
        "Bounce", old[1], "f1@gmail.com", sent3 + timedelta(hours=1), diagnostic=HARD_550, **hard
    )
    for i in range(2, 6):
        x.event("Delivery", old[i], f"f{i}@gmail.com", sent3 + timedelta(hours=1))

    x.event("Bounce", None, "stranger@elsewhere.org", now - timedelta(hours=1), **hard)

    x.suppression("a8@gmail.com", "hard_bounce", now - timedelta(minutes=10))
    x.suppression("a6@gmail.com", "complaint", now - timedelta(minutes=5))
    x.suppression("manual1@example.org", "manual", now - day)
    x.suppression("soft@example.org", "soft_bounce_limit", now - 3 * day)
    x.suppression("old@example.org", "manual", now - 40 * day)
    session.add(
        ConsentEvent(action="unsuppress", source="cli", created_at=now - timedelta(minutes=1))
    )
    session.flush()
    return Seeded(now, x.mlist.id, c1.id, c2.id, c3.id, dict(x.deliveries))


def _email_of(row: Delivery, x: _Seeder) -> str:
    for email, sub in x.subs.items():
        if sub.id == row.subscriber_id:
            return email
    raise AssertionError("row without a subscriber")
