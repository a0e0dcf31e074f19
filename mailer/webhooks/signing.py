"""Standard Webhooks signatures (https://www.standardwebhooks.com), by the reference
package ``standardwebhooks``: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` with a ``whsec_<base64>`` secret."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

__all__ = ["new_secret", "signed_headers"]

#: 32 random bytes, as the specification recommends (24 to 64)
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh ``whsec_`` secret for a new endpoint."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(secret: str, msg_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three headers of one attempt (``at`` is when it is sent, so a receiver can
    refuse old replays; ``msg_id`` is the same on every retry)."""
    at = at.astimezone(UTC)  # the package reads the time as UTC whatever its zone
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
