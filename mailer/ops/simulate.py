"""An SES event about one of our deliveries, made up on this machine (`mailer feedback
simulate`), so a newcomer can try the whole feedback loop without SES.

The event is built exactly as SES would send it for that delivery: ``mail.messageId`` is the
message id the ledger recorded (for the outbox, the ``.eml`` file's name) and ``mail.tags``
carry our ``campaign`` and ``delivery`` tags, so it is matched the way a real one is.
A bounce is permanent (the address is suppressed), a complaint an abuse report (suppressed,
unsubscribed), a delivery is recorded only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from mailer.errors import InputError, NotFoundError
from mailer.sending.models import Delivery
from subscribers.models import Subscriber

Kind = Literal["bounce", "complaint", "delivery"]
KINDS: tuple[Kind, ...] = ("bounce", "complaint", "delivery")


def simulated_event(session: Session, delivery_id: int, kind: str, now: datetime) -> dict[str, Any]:
    """The SES event (configuration-set form) ``kind`` for delivery ``delivery_id``."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    row = session.get(Delivery, delivery_id)
    if row is None:
        raise NotFoundError(f"no delivery {delivery_id} (see `mailer campaigns show N`)")
    if not row.message_id:
        raise InputError(
            f"delivery {delivery_id} was never sent (status {row.status}): SES reports only "
            "on messages it accepted"
        )
    reader = session.get(Subscriber, row.subscriber_id) if row.subscriber_id else None
    if reader is None or not reader.email:
        raise InputError(f"delivery {delivery_id}'s reader was erased: nothing to report on")
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    tags: dict[str, list[str]] = {"delivery": [str(row.id)]}
    if row.campaign_id is not None:
        tags["campaign"] = [str(row.campaign_id)]
    event: dict[str, Any] = {
        "eventType": kind.capitalize(),
        "mail": {
            "timestamp": stamp,
            "messageId": row.message_id,
            "destination": [reader.email],
            "tags": tags,
        },
    }
    feedback_id = f"simulated-{uuid.uuid4()}"
    if kind == "bounce":
        event["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": reader.email,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown (simulated)",
                }
            ],
            "timestamp": stamp,
            "feedbackId": feedback_id,
        }
    elif kind == "complaint":
        event["complaint"] = {
            "complainedRecipients": [{"emailAddress": reader.email}],
            "complaintFeedbackType": "abuse",
            "timestamp": stamp,
            "feedbackId": feedback_id,
        }
    else:
        event["delivery"] = {
            "recipients": [reader.email],
            "smtpResponse": "250 2.0.0 OK (simulated)",
            "timestamp": stamp,
            "processingTimeMillis": 1,
        }
    return event
