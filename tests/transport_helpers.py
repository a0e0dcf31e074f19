"""Small builders shared by the transport tests: a campaign and real MIME messages."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

from mailer.transports.base import CampaignMessage, OutgoingMessage

FROM = "The Brief <brief@news.example.com>"


def campaign(campaign_id: int = 7, **overrides: object) -> CampaignMessage:
    values: dict[str, object] = {
        "campaign_id": campaign_id,
        "subject": "Morning brief",
        "from_address": FROM,
        "html": "<p>Hello</p>",
        "text": "Hello",
        "headers": {"List-Id": "Brief <brief.news.example.com>"},
    }
    values.update(overrides)
    return CampaignMessage(**values)  # type: ignore[arg-type]


def raw_message(
    to: str, *, delivery_id: int = 1, body: str = "Hello", subject: str = "Hi"
) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = FROM
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<d{delivery_id}.c7@news.example.com>"
    msg["List-Unsubscribe"] = f"<https://news.example.com/unsubscribe/t{delivery_id}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(body)
    msg.add_alternative(f"<p>{body}</p>", subtype="html")
    return msg.as_bytes()


def outgoing(to: str, delivery_id: int = 1, *, body: str = "Hello") -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=delivery_id,
        to=to,
        raw=raw_message(to, delivery_id=delivery_id, body=body),
        message_id=f"<d{delivery_id}.c7@news.example.com>",
    )
