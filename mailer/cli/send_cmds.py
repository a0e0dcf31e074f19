"""`mailer send`, `mailer campaigns ...`, `mailer worker`: thin over campaigns and delivery."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailer.cli.app import app
from mailer.cli.context import AppContext, app_context
from mailer.config import parse_duration
from mailer.errors import InputError
from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue
from mailer.render.compiler import Branding, RenderedIssue, render_issue
from mailer.render.message import MessageTemplate
from mailer.render.tokens import Signer
from mailer.sending import campaigns as camp
from mailer.sending import lifecycle
from mailer.sending.engine import Engine, reader_message
from mailer.sending.engine import Progress as SendProgress
from mailer.transports import make_transport
from mailer.transports.base import Transport
from subscribers import store
from subscribers.addresses import normalize_email
from subscribers.models import MailingList, utcnow

campaigns_app = typer.Typer(
    help="Campaigns: list, show, pause, resume, cancel.", no_args_is_help=True
)
app.add_typer(campaigns_app, name="campaigns")


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """'2026-11-29T06:00+08:00', '2026-11-29 06:00' (local time), '+2h', 'in 30m'."""
    now = now or utcnow()
    rel = re.match(r"^\s*(?:\+|in\s+)(.+)$", text)
    try:
        if rel:
            return now + timedelta(seconds=parse_duration(rel.group(1)))
        when = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise InputError(
            f"--at: cannot read {text!r} (use e.g. 2026-11-29T06:00+08:00 or +2h)"
        ) from err
    return (when if when.tzinfo else when.astimezone()).astimezone(UTC)


def _duration(option: str, text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as err:
        raise InputError(f"{option}: {err}") from err


def render_for(actx: AppContext, mlist: MailingList, key: str, issue: Issue) -> RenderedIssue:
    """Render once, with the "view in browser" link pointing at the issue's archive page."""
    settings = actx.settings
    url = camp.archive_url(settings.public_base, mlist.slug, key)
    return render_issue(issue, Branding.from_settings(settings, mlist.name, url))


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

    Example: mailer send issues/2026-11-28.txt --list china-brief --expires-after 6h
    """
    actx = app_context(ctx)
    issue = parse_issue_file(file)
    key = issue.key()
    with actx.sessions() as s:
        mlist = store.get_list(s, list_slug)
        recipients = camp.count_recipients(s, mlist.id)
    rendered = render_for(actx, mlist, key, issue)
    for warning in rendered.warnings:
        actx.err.print(f"warning: {warning}", markup=False, highlight=False)
    if dry_run:
        actx.console.print(f"dry run: would send to {recipients} readers of {mlist.slug}")
        actx.console.print(f"subject: {rendered.subject}", markup=False)
        actx.console.print(
            f"sizes: html {len(rendered.html.encode()):,} bytes, "
            f"text {len(rendered.text.encode()):,} bytes"
        )
        return
    if test_to:
        send_test(actx, mlist, rendered, test_to)
        return
    scheduled = parse_when(at) if at else None
    expires = (
        (scheduled or utcnow()) + _duration("--expires-after", expires_after)
        if expires_after
        else None
    )
    with actx.sessions.begin() as s:
        mlist = store.get_list(s, list_slug)
        campaign, enqueued = camp.create_campaign(
            s,
            mailing_list=mlist,
            issue_key=key,
            issue=issue.to_dict(),
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            archive_html=rendered.for_archive(),
            scheduled_at=scheduled,
            expires_at=expires,
            force=force,
        )
        cid = campaign.id
    actx.console.print(f"campaign {cid}: {enqueued} readers of {list_slug} queued")
    if scheduled is not None and scheduled > utcnow():
        actx.console.print(
            f"scheduled for {scheduled:%Y-%m-%d %H:%M}Z; `mailer worker` sends it then"
        )
        return
    run_with_progress(actx, cid)


def send_test(
    actx: AppContext, mlist: MailingList, rendered: RenderedIssue, addresses: list[str]
) -> None:
    """The real rendered issue to a few addresses, subject [TEST]; the ledger is untouched."""
    settings = actx.settings
    template = MessageTemplate.build(
        campaign_id=0,
        subject="[TEST] " + rendered.subject,
        from_address=mlist.from_address,
        reply_to=mlist.reply_to,
        html=rendered.html,
        text=rendered.text,
        list_name=mlist.name,
        list_slug=mlist.slug,
    )
    signer = Signer.from_settings(settings)
    transport = make_transport(settings)
    try:
        batch = [
            reader_message(
                template,
                signer,
                settings.public_base,
                list_id=mlist.id,
                subscriber_id=0,  # no reader: the links lead to a "not found" page
                delivery_id=i,
                email=normalize_email(address),
                name="",
            )
            for i, address in enumerate(addresses)
        ]
        for i in range(0, len(batch), max(1, transport.max_batch)):
            chunk = batch[i : i + max(1, transport.max_batch)]
            for msg, result in zip(chunk, transport.send(template.campaign, chunk), strict=True):
                if result.ok:
                    actx.console.print(f"test sent to {msg.to} ({result.message_id})")
                else:
                    actx.err.print(f"test to {msg.to} failed: {result.error}", markup=False)
    finally:
        transport.close()


@contextmanager
def _graceful_stop(engine: Engine) -> Iterator[None]:
    """Ctrl-C / SIGTERM: finish the batch in flight, leave the rest queued."""

    def handler(signum: int, frame: FrameType | None) -> None:
        engine.request_stop()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_with_progress(actx: AppContext, campaign_id: int) -> SendProgress:
    """Run the engine on one campaign; a Rich progress bar on a terminal; summary at the end."""
    transport = make_transport(actx.settings)
    try:
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

                result = _run(actx, transport, campaign_id, show)
        else:
            result = _run(actx, transport, campaign_id, None)
    finally:
        transport.close()
    print_report(actx, campaign_id)
    return result


def _run(
    actx: AppContext,
    transport: Transport,
    campaign_id: int,
    show: Callable[[SendProgress], None] | None,
) -> SendProgress:
    engine = Engine(actx.settings, actx.sessions, transport, on_progress=show)
    with engine, _graceful_stop(engine):
        return engine.run(campaign_id)


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
    with actx.sessions.begin() as s:
        lifecycle.pause(s, campaign_id, reason)
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

    Example: mailer campaigns resume 12
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as s:
        lifecycle.resume(s, campaign_id, force=force)
    if background:
        actx.console.print(f"campaign {campaign_id} resumed; a worker will send it")
        return
    run_with_progress(actx, campaign_id)


@campaigns_app.command("cancel")
def campaigns_cancel(ctx: typer.Context, campaign_id: int) -> None:
    """Cancel a campaign; readers not yet sent to are marked skipped.

    Example: mailer campaigns cancel 12
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as s:
        n = lifecycle.cancel(s, campaign_id)
    actx.console.print(f"campaign {campaign_id} cancelled; {n} queued readers skipped")


@campaigns_app.command("retry-failed")
def campaigns_retry_failed(ctx: typer.Context, campaign_id: int) -> None:
    """Put a campaign's failed rows back in the queue and send them.

    Example: mailer campaigns retry-failed 12
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as s:
        n = lifecycle.retry_failed(s, campaign_id)
    actx.console.print(f"campaign {campaign_id}: {n} failed rows queued again")
    if n:
        run_with_progress(actx, campaign_id)


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

    Example: mailer worker --once
    """
    actx = app_context(ctx)
    transport = make_transport(actx.settings)
    engine = Engine(actx.settings, actx.sessions, transport)
    try:
        engine.start(wait=wait)
        with _graceful_stop(engine):
            while not engine.stopping:
                with actx.sessions() as s:
                    due = camp.runnable(s, utcnow())
                for cid in due:
                    result = engine.run(cid)
                    actx.console.print(
                        f"campaign {cid}: {result.status}, sent {result.sent}, "
                        f"failed {result.failed}, skipped {result.skipped}"
                        + (f" ({result.reason})" if result.reason else "")
                    )
                    if engine.stopping:
                        break
                if once and not due:
                    break
                if not due:
                    time.sleep(poll)
    finally:
        engine.close()
        transport.close()
