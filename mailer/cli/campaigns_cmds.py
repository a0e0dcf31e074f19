"""`mailer campaigns ...`: parse the arguments, call one use case of
:mod:`mailer.sending.publish`, format what it returns, exit with how it ended
(:mod:`mailer.cli.exit_codes`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailer.cli.context import app_context
from mailer.cli.exit_codes import of_outcome
from mailer.cli.running import exit_with, print_report, run_with_progress
from mailer.sending import campaigns as camp
from mailer.sending import publish

campaigns_app = typer.Typer(
    help="Campaigns: list, show, pause, resume, cancel.", no_args_is_help=True
)


@campaigns_app.command("list")
def campaigns_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit")] = 20,
) -> None:
    """The newest campaigns with their state and progress.

    Example: mailer campaigns list --limit 5
    """
    actx = app_context(ctx)
    table = Table("id", "list", "status", "subject", "sent", "failed", "queued", "created")
    with actx.sessions() as s:
        for c in camp.latest(s, limit):
            rep = camp.report(s, c.id, failures=0)
            table.add_row(
                str(c.id),
                rep.list_slug,
                c.status,
                c.subject[:50],
                str(rep.counts.get("sent", 0)),
                str(rep.counts.get("failed", 0)),
                str(rep.counts.get("queued", 0) + rep.counts.get("sending", 0)),
                c.created_at.isoformat(timespec="minutes"),
            )
    actx.console.print(table)


@campaigns_app.command("show")
def campaigns_show(ctx: typer.Context, campaign_id: int) -> None:
    """Per-state counts, rate, times, pause reason and the failed rows with their errors.

    Example: mailer campaigns show 12
    """
    print_report(app_context(ctx), campaign_id)


@campaigns_app.command("pause")
def campaigns_pause(
    ctx: typer.Context,
    campaign_id: int,
    reason: Annotated[str, typer.Option("--reason")] = "paused by an operator",
) -> None:
    """Pause a sending or scheduled campaign; workers stop after the batch in flight.

    Example: mailer campaigns pause 12 --reason "wrong link in item 3"
    """
    actx = app_context(ctx)
    publish.pause(actx.sessions, campaign_id, reason)
    actx.console.print(f"campaign {campaign_id} paused")


@campaigns_app.command("resume")
def campaigns_resume(
    ctx: typer.Context,
    campaign_id: int,
    force: Annotated[
        bool, typer.Option("--force", help="Resume after a reputation-guard pause.")
    ] = False,
    background: Annotated[
        bool, typer.Option("--background", help="Only mark it sending; a worker sends it.")
    ] = False,
) -> None:
    """Resume a paused (or crashed) campaign: re-claims queued rows and dead workers' claims.

    Exits like `mailer send` with how the campaign ended (README: Exit codes).

    Example: mailer campaigns resume 12
    """
    actx = app_context(ctx)
    publish.resume(actx.sessions, campaign_id, force=force)
    if background:
        actx.console.print(f"campaign {campaign_id} resumed; a worker will send it")
        return
    exit_with(of_outcome(run_with_progress(actx, campaign_id)))


@campaigns_app.command("cancel")
def campaigns_cancel(ctx: typer.Context, campaign_id: int) -> None:
    """Cancel a campaign; readers not yet sent to are marked skipped.

    Example: mailer campaigns cancel 12
    """
    actx = app_context(ctx)
    change = publish.cancel(actx.sessions, campaign_id)
    actx.console.print(f"campaign {campaign_id} cancelled; {change.rows} queued readers skipped")


@campaigns_app.command("retry-failed")
def campaigns_retry_failed(ctx: typer.Context, campaign_id: int) -> None:
    """Put a campaign's failed rows back in the queue and send them.

    Exits like `mailer send` with how the campaign ended (README: Exit codes).

    Example: mailer campaigns retry-failed 12
    """
    actx = app_context(ctx)
    change = publish.retry_failed(actx.sessions, campaign_id)
    actx.console.print(f"campaign {campaign_id}: {change.rows} failed rows queued again")
    if change.rows:
        exit_with(of_outcome(run_with_progress(actx, campaign_id)))
