"""The outbox transport: each message becomes an ``.eml`` file, nothing leaves the machine.

The embedded default for the demo, previews and tests. An issue's messages land in
``<MAILER_OUTBOX_DIR>/<campaign_id>/<delivery_id>.eml``; a mail of no campaign in
``<MAILER_OUTBOX_DIR>/0/`` named by its kind: ``confirm-…``, ``welcome-<delivery_id>.eml``,
``test-….eml`` for a test send (a random name where there is no delivery id). The file name
is the message id the ledger keeps, so a feedback event naming it finds its delivery.
Each file is written to a temporary name in the same directory and moved into place with
:func:`os.replace`, so a reader of the directory (or a crash) never sees half a message.
Writing the same delivery again replaces the file: the outbox holds at most one copy per
delivery.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from mailer.config import Settings
from mailer.errors import FatalSendError, RetryableSendError
from mailer.transports.base import CampaignMessage, OutgoingMessage, SendQuota, SendResult


class OutboxTransport:
    """Writes messages as files; safe from many threads (no shared mutable state)."""

    name = "outbox"
    max_batch = 1
    wants_raw = True
    concurrent_batch = False

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxTransport:
        return cls(settings.outbox_dir)

    def send(self, campaign: CampaignMessage, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        folder = self.directory / str(campaign.campaign_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FatalSendError(f"outbox: cannot create {folder}: {err.strerror}") from err
        kind = campaign.tags.get("kind")  # a system mail: confirm, welcome, preferences
        return [self._write(folder, message, kind) for message in batch]

    def path_of(self, campaign_id: int, message_id: str) -> Path:
        """Where the message :meth:`send` named ``message_id`` was written (to print it)."""
        return (self.directory / str(campaign_id) / message_id).resolve()

    def _write(self, folder: Path, message: OutgoingMessage, kind: str | None) -> SendResult:
        if kind is None and message.delivery_id > 0:  # an issue's reader
            stem = str(message.delivery_id)
        else:
            own = str(message.delivery_id) if message.delivery_id > 0 else uuid.uuid4().hex
            stem = f"{kind or 'test'}-{own}"
        name = f"{stem}.eml"
        final = folder / name
        temp = folder / f".{stem}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temp, "wb") as fh:
                fh.write(message.raw)
            os.replace(temp, final)
        except OSError as err:
            temp.unlink(missing_ok=True)
            return SendResult(
                error=RetryableSendError(f"outbox: cannot write {final}: {err.strerror}")
            )
        return SendResult(message_id=name)

    def quota(self) -> SendQuota | None:
        """None: files have no rate or daily limit (``MAILER_SEND_RATE`` still paces)."""
        return None

    def close(self) -> None:
        """Nothing to release."""
