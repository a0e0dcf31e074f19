"""`mailer campaigns ...`: parse the arguments, call one use case of
:mod:`mailer.sending.publish`, format what it returns, exit with how it ended
(:mod:`mailer.cli.exit_codes`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from mailer.cli.campaign_report import print_report
from mailer.cli.context import app_context
from mailer.cli.safe_text import safe_json
from mailer.cli.tables import Col, emit
from mailer.sending import report as camp

campaigns_app = typer.Typer(
    help="Campaigns: list, show, pause, resume, cancel.", no_args_is_help=True
)


@campaigns_app.command("list")
def campaigns_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The newest campaigns with their state, progress and times (scheduled: when it starts).

    Example: mailer campaigns list --limit 5
    """
    actx = app_context(ctx)
    rows = []
    with actx.sessions() as s:
        for c in camp.latest(s, limit):
            rep = camp.report(s, c.id, failures=0)
            n = rep.counts
            rows.append(
                (
                    c.id,
                    rep.list_slug,
                    c.status,
                    c.subject,
                    n.get("sent", 0),
                    n.get("failed", 0),
                    n.get("skipped", 0),
                    n.get("queued", 0) + n.get("sending", 0),
                    _when(c.scheduled_at),
                    _when(c.created_at),
                )
            )
    columns = [Col("id", keep=True, numeric=True), Col("list", keep=True), Col("status")]
    columns += [Col("subject")]
    columns += [Col(n, numeric=True) for n in ("sent", "failed", "skipped", "queued")]
    emit(actx, [*columns, Col("scheduled"), Col("created")], rows, as_json=as_json)


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="minutes")


@campaigns_app.command("show")
def campaigns_show(
    ctx: typer.Context,
    campaign_id: int,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print GET /api/v1/campaigns/ID's JSON.")
    ] = False,
) -> None:
    """Per-state counts, rate, times, pause reason and the failed rows with their errors.

    Example: mailer campaigns show 12
    """
    actx = app_context(ctx)
    if as_json:  # the view the API and the desk show (mailer.ops.campaign_view)
        # imported here: the view's figures (feedback tables, reputation) cost the table
        # form ~10 ms of its start-up (python -X importtime), which needs none of them
        from mailer.ops.campaign_view import campaign_view

        with actx.sessions() as s:
            print(safe_json(campaign_view(s, campaign_id).to_json()))
        return
    print_report(actx, campaign_id)


@campaigns_app.command("pause")
def campaigns_pause(
    ctx: typer.Context,
    campaign_id: int,
    reason: Annotated[
        str, typer.Option("--reason", help="Why: shown by campaigns show and /admin.")
    ] = "paused by an operator",
) -> None:
    """Pause a sending or scheduled campaign; workers stop after the batch in flight.

    Example: mailer campaigns pause 12 --reason "wrong link in item 3"
    """
    # Imported here, not at the top: the send path (mailer.sending.publish, engine,
    # transports, via mailer.cli.running) adds ~90 ms (python -X importtime) to the start of
    # the light `campaigns list|show` (issue 17). The same in the commands below.
    from mailer.sending import publish

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
    from mailer.cli.exit_codes import of_outcome  # the send path: see campaigns_pause
    from mailer.cli.running import exit_with, run_with_progress
    from mailer.sending import publish

    actx = app_context(ctx)
    # the store's holder at the shell is ops (as MAILER_ADMIN_TOKEN is)
    resumed = publish.resume(actx.sessions, campaign_id, force=force, ops=True)
    if resumed.status == "scheduled":  # paused before its time: it waits for it again
        actx.console.print(
            f"campaign {campaign_id} resumed: scheduled, `mailer worker` sends it at its time"
        )
        return
    if background:
        actx.console.print(f"campaign {campaign_id} resumed; a worker will send it")
        return
    exit_with(of_outcome(run_with_progress(actx, campaign_id)))


@campaigns_app.command("cancel")
def campaigns_cancel(ctx: typer.Context, campaign_id: int) -> None:
    """Cancel a campaign; readers not yet sent to are marked skipped.

    Example: mailer campaigns cancel 12
    """
    from mailer.sending import publish  # the send path: see campaigns_pause

    actx = app_context(ctx)
    change = publish.cancel(actx.sessions, campaign_id)
    actx.console.print(f"campaign {campaign_id} cancelled; {change.rows} queued readers skipped")


@campaigns_app.command("retry-failed")
def campaigns_retry_failed(ctx: typer.Context, campaign_id: int) -> None:
    """Put a campaign's failed rows back in the queue and send them.

    Exits like `mailer send` with how the campaign ended (README: Exit codes).

    Example: mailer campaigns retry-failed 12
    """
    from mailer.cli.exit_codes import of_outcome  # the send path: see campaigns_pause
    from mailer.cli.running import exit_with, run_with_progress
    from mailer.sending import publish

    actx = app_context(ctx)
    change = publish.retry_failed(actx.sessions, campaign_id)
    actx.console.print(f"campaign {campaign_id}: {change.rows} failed rows queued again")
    if change.rows:
        exit_with(of_outcome(run_with_progress(actx, campaign_id)))
