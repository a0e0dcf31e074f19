"""`mailer suppressions`: thin wrappers over subscribers.store and
mailer.feedback.suppression_sync.

Addresses and bounce details from the store are printed through mailer.cli.safe_text,
never raw and never as markup.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.context import app_context
from mailer.cli.safe_text import safe_text
from mailer.cli.tables import Col, emit
from mailer.feedback.suppression_sync import sync_suppressions
from subscribers import store

suppressions_app = typer.Typer(
    help="The suppression list: addresses never mailed.", no_args_is_help=True
)


@suppressions_app.command("list")
def suppressions_list(
    ctx: typer.Context,
    search: Annotated[
        str | None, typer.Option("--search", help="Substring of the address.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List suppressed addresses, newest first.

    Example: mailer suppressions list --search example.com
    """
    actx = app_context(ctx)
    with actx.sessions() as session:
        rows = [
            (
                s.email or "(erased)",
                s.reason,
                s.created_at.isoformat(timespec="seconds"),
                s.detail or "",
            )
            for s in store.list_suppressions(session, search=search, limit=limit)
        ]
    emit(
        actx,
        [Col("email", keep=True), Col("reason"), Col("since"), Col("detail")],
        rows,
        as_json=as_json,
    )


@suppressions_app.command("add")
def suppressions_add(
    ctx: typer.Context,
    email: str,
    reason: Annotated[
        str, typer.Option("--reason", help="manual, hard_bounce, complaint ...")
    ] = "manual",
    detail: Annotated[
        str | None, typer.Option("--detail", help="Why, in a few words (kept with the entry).")
    ] = None,
) -> None:
    """Suppress an address: it is never mailed again until removed.

    Example: mailer suppressions add someone@example.com --reason manual
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        row = store.suppress(session, email, reason, detail=detail)
        actx.console.print(
            f"suppressed {safe_text(row.email)} ({safe_text(row.reason)})", markup=False
        )


@suppressions_app.command("remove")
def suppressions_remove(ctx: typer.Context, email: str) -> None:
    """Remove an address from the suppression list (logged in the consent ledger).

    Example: mailer suppressions remove someone@example.com
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        removed = store.unsuppress(session, email)
    shown = safe_text(email)
    actx.console.print(
        f"removed {shown}" if removed else f"{shown} was not suppressed", markup=False
    )


@suppressions_app.command("sync")
def suppressions_sync(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would change.")
    ] = False,
) -> None:
    """Pull SES's account-level suppression list into ours and push our bounce and complaint
    suppressions up (ListSuppressedDestinations / PutSuppressedDestination). Idempotent.

    Example: MAILER_SES_REGION=eu-west-1 mailer suppressions sync --dry-run
    """
    # Imported here: the SES transport (boto3, aiohttp) costs 100 ms or more to import
    # (-X importtime), which the other suppressions commands would pay.
    from mailer.transports.ses import make_ses_client

    actx = app_context(ctx)
    report = sync_suppressions(make_ses_client(actx.settings), actx.sessions, dry_run=dry_run)
    prefix = "would have: " if dry_run else ""
    actx.console.print(prefix + report.summary())
    for address in report.skipped:
        actx.err.print(f"skipped unusable SES address: {address}", markup=False)
