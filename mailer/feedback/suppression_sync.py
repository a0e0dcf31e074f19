"""Two-way sync between our suppression list and SES's account-level suppression list.

Pull: every address SES suppresses (ListSuppressedDestinations, all pages) that we do not
is suppressed here with reason ``ses_account`` (detail: SES's reason), recorded in the
consent ledger with source ``ses-suppression-sync``.

Push: every address we suppressed because mail to it failed or was unwanted
(``hard_bounce``, ``soft_bounce_limit`` -> BOUNCE; ``complaint`` -> COMPLAINT) that SES does
not list is put there (PutSuppressedDestination). Manual suppressions are an editorial
choice, not a deliverability fact, and stay local; erased addresses have no address left.

Both directions compare first and write only the difference, so running it again changes
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import InvalidAddressError, TransportError
from subscribers import store
from subscribers.addresses import normalize_email
from subscribers.db import transaction
from subscribers.models import Suppression, SuppressionReason

__all__ = ["PUSH_REASONS", "SyncReport", "sync_suppressions"]

log = logging.getLogger(__name__)

PUSH_REASONS = {
    SuppressionReason.HARD_BOUNCE.value: "BOUNCE",
    SuppressionReason.SOFT_BOUNCE_LIMIT.value: "BOUNCE",
    SuppressionReason.COMPLAINT.value: "COMPLAINT",
}
ACTOR = store.Actor("ses-suppression-sync")


@dataclass
class SyncReport:
    ses_listed: int = 0
    pulled: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # SES addresses we cannot normalize

    def summary(self) -> str:
        return (
            f"SES lists {self.ses_listed}; pulled {len(self.pulled)} new into ours, "
            f"pushed {len(self.pushed)} up to SES, skipped {len(self.skipped)} unusable"
        )


def sync_suppressions(
    sesv2: Any, sessions: sessionmaker[Session], *, dry_run: bool = False, page_size: int = 1000
) -> SyncReport:
    """Pull SES's list into ours, push ours up; with ``dry_run``, only report."""
    report = SyncReport()
    remote: dict[str, str] = {}
    for address, reason in _list_remote(sesv2, page_size):
        report.ses_listed += 1
        try:
            remote[normalize_email(address)] = reason
        except InvalidAddressError:
            report.skipped.append(address)
    with transaction(sessions) as session:
        local = _local(session)
        for address in sorted(set(remote) - set(local)):
            report.pulled.append(address)
            if not dry_run:
                store.suppress(
                    session,
                    address,
                    SuppressionReason.SES_ACCOUNT,
                    actor=ACTOR,
                    detail=f"SES account suppression list: {remote[address]}",
                )
    for address, reason in sorted(local.items()):
        if address in remote or reason not in PUSH_REASONS:
            continue
        report.pushed.append(address)
        if not dry_run:
            _put(sesv2, address, PUSH_REASONS[reason])
    log.info("suppression sync: %s", report.summary())
    return report


def _local(session: Session) -> dict[str, str]:
    rows = session.execute(
        select(Suppression.email, Suppression.reason).where(Suppression.email.is_not(None))
    )
    return {email: reason for email, reason in rows if email}


def _list_remote(sesv2: Any, page_size: int) -> Iterator[tuple[str, str]]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"PageSize": page_size}
        if token:
            kwargs["NextToken"] = token
        try:
            page = sesv2.list_suppressed_destinations(**kwargs)
        except Exception as err:
            raise TransportError(f"SES ListSuppressedDestinations failed: {err}") from err
        for item in page.get("SuppressedDestinationSummaries", []):
            yield item["EmailAddress"], item.get("Reason", "BOUNCE")
        token = page.get("NextToken")
        if not token:
            return


def _put(sesv2: Any, address: str, reason: str) -> None:
    try:
        sesv2.put_suppressed_destination(EmailAddress=address, Reason=reason)
    except Exception as err:
        raise TransportError(f"SES PutSuppressedDestination {address} failed: {err}") from err
