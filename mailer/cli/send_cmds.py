"""`mailer send`, `mailer campaigns ...`, `mailer worker`: parse the arguments, call one use
case of :mod:`mailer.sending.publish`, format what it returns, exit with how it ended
(:mod:`mailer.cli.exit_codes`)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailer.cli.app import app
from mailer.cli.context import AppContext, app_context
from mailer.cli.exit_codes import ExitCode, of_outcome, of_outcomes
from mailer.issue.files import parse_issue_file
from mailer.sending import campaigns as camp
from mailer.sending import publish
from mailer.sending.engine import Engine
from mailer.sending.engine import Progress as SendProgress
from mailer.sending.publish import Outcome
from mailer.sending.schedule import Schedule
from mailer.transports import make_transport
from mailer.transports.base import Transport
from subscribers import store

campaigns_app = typer.Typer(
    help="Campaigns: list, show, pause, resume, cancel.", no_args_is_help=True
)
app.add_typer(campaigns_app, name="campaigns")


@contextmanager
def _transport(actx: AppContext) -> Iterator[Transport]:
    transport = make_transport(actx.settings)
    try:
        yield transport
    finally:
        transport.close()


def _exit(code: ExitCode) -> None:
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


@app.command("send")
def send(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The issue file (brief text or Markdown).")],
    list_slug: Annotated[str, typer.Option("--list", help="List slug.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and render; send nothing.")
    ] = False,
    test_to: Annotated[
        list[str] | None,
        typer.Option("--test-to", help="Send only to this address, subject [TEST] (repeatable)."),
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="Schedule: ISO time or +2h.")] = None,
    expires_after: Annotated[
        str | None,
        typer.Option("--expires-after", help="Refuse or stop sending this long after the start."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Send an issue already sent.")] = False,
) -> None:
    """Send an issue to a list: parse, render once, enqueue every active reader, send.

    Exits 0 when every reader was sent or skipped (or the send is scheduled), 1 on an error
    or failed rows, 3 paused, 4 expired, 5 cancelled, 6 stopped (README: Exit codes).

    Example: mailer send issues/2026-11-28.txt --list china-brief --expires-after 6h
    """
    actx = app_context(ctx)
    issue = parse_issue_file(file)
    schedule = Schedule.parse(at, expires_after, force=force)
    with actx.sessions() as s:
        mlist = store.get_list(s, list_slug)
    rendered = publish.render_for(actx.settings, mlist, issue)
    for warning in rendered.warnings:
        actx.err.print(f"warning: {warning}", markup=False, highlight=False)
    if dry_run:
        counted = publish.dry_run(actx.sessions, mlist, rendered)
        actx.console.print(
            f"dry run: would send to {counted.recipients} readers of {counted.list_slug}"
        )
        actx.console.print(f"subject: {counted.subject}", markup=False)
        actx.console.print(
            f"sizes: html {counted.html_bytes:,} bytes, text {counted.text_bytes:,} bytes"
        )
        return
    if test_to:
        with _transport(actx) as transport:
            sent = publish.send_test(actx.settings, transport, mlist, rendered, test_to)
        for one in sent:
            if one.ok:
                actx.console.print(f"test sent to {one.to} ({one.message_id})")
            else:
                actx.err.print(f"test to {one.to} failed: {one.error}", markup=False)
        _exit(ExitCode.OK if all(one.ok for one in sent) else ExitCode.ERROR)
        return
    created = publish.create(actx.sessions, mlist, issue, rendered, schedule)
    actx.console.print(
        f"campaign {created.campaign_id}: {created.enqueued} readers of {list_slug} queued"
    )
    if schedule.at is not None and not created.due:
        actx.console.print(
            f"scheduled for {schedule.at:%Y-%m-%d %H:%M}Z; `mailer worker` sends it then"
        )
        return
    _exit(of_outcome(run_with_progress(actx, created.campaign_id)))


@contextmanager
def _graceful_stop(engine: Engine) -> Iterator[None]:
    """SIGTERM: finish the batch in flight, leave the rest queued."""

    def handler(signum: int, frame: FrameType | None) -> None:
        engine.request_stop()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_with_progress(actx: AppContext, campaign_id: int) -> Outcome:
    """Run the campaign here; a Rich progress bar on a terminal; the summary at the end."""
    with _transport(actx) as transport:
        if actx.interactive:
            with Progress(
                TextColumn("sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("failed {task.fields[failed]}  {task.fields[rate]:.0f}/s"),
                TimeRemainingColumn(),
                console=actx.console,
            ) as bar:
                task = bar.add_task("send", total=None, failed=0, rate=0.0)

                def show(p: SendProgress) -> None:
                    bar.update(task, total=p.total, completed=p.done, failed=p.failed, rate=p.rate)

                outcome = _run(actx, transport, campaign_id, show)
        else:
            outcome = _run(actx, transport, campaign_id, None)
    print_report(actx, campaign_id)
    return outcome


def _run(
    actx: AppContext,
    transport: Transport,
    campaign_id: int,
    show: Callable[[SendProgress], None] | None,
) -> Outcome:
    return publish.run(
        actx.settings,
        actx.sessions,
        transport,
        campaign_id,
        on_progress=show,
        watch=_graceful_stop,
    )


def print_report(actx: AppContext, campaign_id: int) -> None:
    with actx.sessions() as s:
        rep = camp.report(s, campaign_id)
    c = rep.campaign
    table = Table(title=f"campaign {c.id}: {c.subject}", show_header=False)
    table.add_row("list", rep.list_slug)
    table.add_row("status", c.status + (f" ({c.pause_reason})" if c.pause_reason else ""))
    for state in ("queued", "sending", "sent", "failed", "skipped"):
        table.add_row(state, str(rep.counts.get(state, 0)))
    table.add_row("readers", str(rep.total))
    table.add_row("in flight at a crash (re-claimed)", str(c.reclaimed))
    table.add_row("rate", f"{rep.rate:.1f}/s")
    for label, value in (
        ("scheduled", c.scheduled_at),
        ("expires", c.expires_at),
        ("started", c.started_at),
        ("finished", c.finished_at),
    ):
        if value is not None:
            table.add_row(label, value.isoformat(timespec="seconds"))
    actx.console.print(table)
    if rep.failures:
        failures = Table("delivery", "email", "error")
        for did, email, cls, err in rep.failures:
            failures.add_row(str(did), email or "(erased)", f"{cls}: {err}")
        actx.console.print(failures)


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
    _exit(of_outcome(run_with_progress(actx, campaign_id)))


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
        _exit(of_outcome(run_with_progress(actx, campaign_id)))


@app.command("worker")
def worker(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Drain what is due, then exit.")] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between looks for work.")] = 5.0,
    wait: Annotated[
        float, typer.Option("--wait", help="SQLite: seconds to wait for another worker.")
    ] = 0.0,
) -> None:
    """Send scheduled and resumed campaigns; keeps running (several on PostgreSQL).

    With --once it exits with how the campaigns it sent ended, the most urgent first: 3
    paused, 1 failed rows, 4 expired, 6 stopped, 5 cancelled, else 0 (README: Exit codes).

    Example: mailer worker --once
    """
    actx = app_context(ctx)
    outcomes: list[Outcome] = []
    with _transport(actx) as transport:
        engine = Engine(actx.settings, actx.sessions, transport)
        try:
            engine.start(wait=wait)
            with _graceful_stop(engine):
                while not engine.stopping:
                    ran = list(_run_due(actx, engine))
                    outcomes += ran
                    if once and not ran:
                        break
                    if not ran:
                        time.sleep(poll)
        finally:
            engine.close()
    if once:
        _exit(of_outcomes(outcomes))


def _run_due(actx: AppContext, engine: Engine) -> Iterator[Outcome]:
    """One look for work; a line per campaign as it ends."""
    for o in publish.run_due(engine, actx.sessions):
        actx.console.print(
            f"campaign {o.campaign_id}: {o.status}, sent {o.sent}, "
            f"failed {o.failed}, skipped {o.skipped}" + (f" ({o.reason})" if o.reason else "")
        )
        yield o
