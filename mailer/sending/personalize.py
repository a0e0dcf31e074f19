"""One reader's message from the campaign's template: the per-reader path
(docs/architecture.md principle 1: compile once, personalize cheaply). The engine builds every
delivery here and ``publish.send_test`` its test messages, so both carry the same links.
"""

from __future__ import annotations

from mailer.render.compiler import clean_field
from mailer.render.message import MessageTemplate
from mailer.render.placeholders import GREETING_FIELD, TRACK_FIELD, greeting_line
from mailer.render.tokens import Signer
from mailer.render.tracking import reader_track
from mailer.transports.base import OutgoingMessage


def reader_message(
    template: MessageTemplate,
    signer: Signer,
    base_url: str,
    *,
    list_id: int,
    subscriber_id: int,
    delivery_id: int,
    email: str,
    name: str,
    raw: bool = True,
    tracked: bool = False,
) -> OutgoingMessage:
    """One reader's message: signed links, cleaned fields, spliced MIME (the per-reader path;
    the engine and `send --test-to` both build messages here). ``tracked``: the template's
    HTML has tracked links (``mailer.sending.tracked``), whose reader part is filled here."""
    unsub = f"{base_url}/unsubscribe/{signer.sign('unsubscribe', subscriber_id, list_id)}"
    prefs = f"{base_url}/preferences/{signer.preferences_token(subscriber_id, list_id)}"
    fields = {"unsubscribe_url": unsub, "preferences_url": prefs, "name": clean_field(name)}
    fields[GREETING_FIELD] = greeting_line(template.greeting, fields["name"])
    if tracked:
        fields[TRACK_FIELD] = reader_track(signer, template.campaign.campaign_id, delivery_id)
    message_id = template.message_id(delivery_id)
    headers = template.reader_headers(email, unsub, message_id)
    body = template.render(to=email, fields=fields, headers=headers) if raw else b""
    return OutgoingMessage(delivery_id, email, body, fields, headers, message_id)
