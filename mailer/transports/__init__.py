"""Transports: how messages leave. Pick one with ``MAILER_TRANSPORT`` via :func:`make_transport`.

* ``outbox`` (default): ``.eml`` files under ``MAILER_OUTBOX_DIR`` (:mod:`.outbox`)
* ``smtp``: a relay at ``MAILER_SMTP_URL`` (:mod:`.smtp`)
* ``ses``: Amazon SES v2, ``MAILER_SES_API`` single or bulk (:mod:`.ses`)

The seam itself (Transport, CampaignMessage, OutgoingMessage, SendResult) is in :mod:`.base`.
The SES backend is imported on demand, so choosing ``outbox`` or ``smtp`` never imports
boto3, botocore or aiohttp.
"""

from __future__ import annotations

from typing import Any

from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.transports.base import CampaignMessage, OutgoingMessage, SendResult, Transport
from mailer.transports.outbox import OutboxTransport
from mailer.transports.smtp import SmtpTransport

__all__ = [
    "CampaignMessage",
    "OutgoingMessage",
    "SendResult",
    "Transport",
    "make_transport",
]


#: Transports whose messages reach real inboxes: their links must not be forgeable.
REAL_TRANSPORTS = frozenset({"smtp", "ses"})


def make_transport(settings: Settings, *, ses_client: Any = None) -> Transport:
    """The transport ``settings.transport`` names (``ses_client`` injects a boto3 client).

    The one way out to readers, so the one place that refuses real mail (smtp, ses) signed
    with no key or the published development key (ConfigError naming MAILER_SECRET_KEY)."""
    if settings.transport in REAL_TRANSPORTS:
        settings.require_real_key(f"send through {settings.transport}")
    if settings.transport == "outbox":
        return OutboxTransport.from_settings(settings)
    if settings.transport == "smtp":
        return SmtpTransport.from_settings(settings)
    if settings.transport == "ses":
        # Lazy: importing mailer.transports.ses (aiohttp, botocore, boto3) took 0.7-0.8 s
        # (python -X importtime after mailer.sending.engine, on a busy 2-core machine) that
        # every outbox or smtp run and every web process would pay; outbox (0.4 ms) and
        # smtp (2-11 ms) are imported at the top.
        from mailer.transports.ses import make_ses_transport

        return make_ses_transport(settings, client=ses_client)
    raise ConfigError(
        f"MAILER_TRANSPORT: unknown transport {settings.transport!r} (outbox, smtp or ses)"
    )
