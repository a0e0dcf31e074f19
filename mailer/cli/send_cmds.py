"""`mailer send` and `mailer worker`: parse the arguments, call one use case of
:mod:`mailer.sending.publish`, format what it returns, exit with how it ended
(:mod:`mailer.cli.exit_codes`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.exc import DBAPIError

from mailer import heap
from mailer.cli.context import AppContext, app_context
from mailer.cli.declared import choose_list
from mailer.cli.exit_codes import ExitCode, of_outcome, of_outcomes
from mailer.cli.running import (
    LIVE,
    exit_with,
    follow_with_progress,
    graceful_stop,
    run_with_progress,
    transport_for,
)
from mailer.errors import ConflictError
from mailer.issue.files import parse_issue_file
from mailer.sending import publish
from mailer.sending.engine import RECONNECT_FIRST_WAIT, RECONNECT_MAX_WAIT, Engine
from mailer.sending.models import get_campaign
from mailer.sending.publish import Outcome
from mailer.sending.schedule import Schedule
from mailer.sending.waves import campaign_waves
from mailer.transports.outbox import OutboxTransport
from subscribers import store

T = TypeVar("T")


def send(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The issue file (brief text or Markdown).")],
    list_slug: Annotated[
        str | None,
        typer.Option("--list", help="List slug (default: the file's front matter 'list:')."),
    ] = None,
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
    subject: Annotated[
        str | None,
        typer.Option("--subject", help="Subject for this send (default: the list's template)."),
    ] = None,
    at_local: Annotated[
        str | None,
        typer.Option(
            "--at-local",
            help="HH:MM: each reader's row waits for that time in their zone (else the "
            "list's, else UTC), the first at or after --at (or now); `mailer worker` sends "
            "each wave. --expires-after then counts from each wave.",
        ),
    ] = None,
) -> None:
    """Send an issue to a list: parse, render once, enqueue every active reader, send.

    Exits 0 when every reader was sent or skipped (or the send is scheduled), 1 on an error
    or failed rows, 3 paused, 4 expired, 5 cancelled, 6 stopped (README: Exit codes).

    The list is --list, or the Markdown front matter's 'list:'. On SQLite, while a `mailer
    worker` is sending, the campaign is queued for that worker and its progress followed.

    The subject is --subject, else the list's subject template, else the issue's own.

    Example: mailer send issues/2026-11-28.txt --list china-brief --expires-after 6h

    Example: mailer send issue.txt --list china-brief --at-local 06:00 --expires-after 6h
    """
    actx = app_context(ctx)
    issue = parse_issue_file(file)
    list_slug = choose_list(file, list_slug)
    schedule = Schedule.parse(at, expires_after, force=force, at_local=at_local)
    with actx.sessions() as s:
        mlist = store.get_list(s, list_slug)
    rendered = publish.render_for(actx.settings, mlist, issue, subject=subject)
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
        with transport_for(actx) as transport:
            sent = publish.send_test(actx.settings, transport, mlist, rendered, test_to)
            where = transport.path_of if isinstance(transport, OutboxTransport) else None
        for one in sent:
            if one.ok and where is not None and one.message_id:
                shown = where(0, one.message_id)  # a test send belongs to no campaign
                actx.console.print(f"test sent to {one.to}: {shown}", markup=False)
            elif one.ok:
                actx.console.print(f"test sent to {one.to} ({one.message_id})")
            else:
                actx.err.print(f"test to {one.to} failed: {one.error}", markup=False)
        exit_with(ExitCode.OK if all(one.ok for one in sent) else ExitCode.ERROR)
        return
    created = publish.create(actx.sessions, mlist, issue, rendered, schedule)
    actx.console.print(
        f"campaign {created.campaign_id}: {created.enqueued} readers of {list_slug} queued"
    )
    if created.schedule.at_local is not None:
        _print_waves(actx, created)
    schedule = created.schedule
    if schedule.at is not None and not created.due:
        actx.console.print(
            f"scheduled for {schedule.at:%Y-%m-%d %H:%M}Z; `mailer worker` sends it then"
        )
        return
    outcome = send_or_follow(actx, created.campaign_id)
    if outcome.next_release is not None:
        actx.console.print(
            f"next wave at {outcome.next_release:%Y-%m-%d %H:%M}Z: `mailer worker` sends each "
            "wave as it is released (`mailer campaigns show "
            f"{created.campaign_id}` lists them)"
        )
    exit_with(of_outcome(outcome))


def _print_waves(actx: AppContext, created: publish.Created) -> None:
    """One line per wave of an --at-local send: when (UTC), how many zones."""
    with actx.sessions() as s:
        waves = campaign_waves(s, get_campaign(s, created.campaign_id))
    for wave in waves:
        zones = ", ".join(wave.zones[:4]) + (" ..." if len(wave.zones) > 4 else "")
        actx.console.print(
            f"  wave {wave.at:%Y-%m-%d %H:%M}Z: {wave.counts.get('queued', 0)} readers, "
            f"{len(wave.zones)} zone(s): {zones}",
            markup=False,
            highlight=False,
        )


def send_or_follow(actx: AppContext, campaign_id: int) -> Outcome:
    """Send the campaign here, or, while a `mailer worker` is SQLite's one sender, leave it
    queued for that worker and follow its progress; send it here if the worker goes away
    before it is done."""
    told = False
    while True:
        worker_id = publish.sending_worker(actx.sessions)
        if worker_id is None:
            try:
                return run_with_progress(actx, campaign_id)
            except ConflictError:  # a worker took SQLite's one sender lease just now
                if publish.sending_worker(actx.sessions) is None:
                    raise
                continue
        if not told:
            actx.console.print(
                f"a worker ({worker_id}) is sending on this SQLite database: campaign "
                f"{campaign_id} is queued for it; following its progress (Ctrl-C stops "
                "following, not the send)",
                markup=False,
            )
            told = True
        outcome = follow_with_progress(actx, campaign_id)
        if outcome.status not in LIVE:
            return outcome


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
    # imported here, not at the top: httpx and the signer add ~57 ms to `mailer send`, which
    # posts no webhooks (python -X importtime, 2026-12-03)
    from mailer.webhooks.dispatch import Background, Dispatcher, Policy

    hooks = Dispatcher(actx.sessions, Policy.from_settings(actx.settings))
    background = Background(hooks, poll)  # webhooks out, on their own thread
    with transport_for(actx) as transport:
        heap.before_long_run()  # the transport is built: what the worker keeps for good
        engine = Engine(actx.settings, actx.sessions, transport)
        riding = _LostConnections(actx, engine, poll, once=once)
        try:
            riding.out(lambda: engine.start(wait=wait))
            if not once:
                background.start()
            with graceful_stop(engine):
                while not engine.stopping:
                    ran = riding.out(lambda: list(_run_due(actx, engine))) or []
                    outcomes += ran
                    if once and not ran:
                        break
                    if not ran:
                        time.sleep(poll)
        finally:
            background.stop()
            engine.close()
    if once:
        hooks.once()  # each due webhook delivery tried once
        if not outcomes:
            actx.console.print("nothing due: no campaign is sending or scheduled before now")
        exit_with(of_outcomes(outcomes))


class _LostConnections:
    """A running worker outlives a lost connection (a failover, a killed session) while it
    starts or looks for work, as a campaign's run does while it sends: it says so and tries
    again, the waits doubling up to RECONNECT_MAX_WAIT, until it is asked to stop. (systemd
    would restart it, but a restart cuts the webhooks' posts in flight, and only the look
    failed.) ``--once`` still fails at once: a one-shot command says what went wrong."""

    def __init__(self, actx: AppContext, engine: Engine, poll: float, *, once: bool) -> None:
        self.actx = actx
        self.engine = engine
        self.poll = poll
        self.once = once

    def out(self, step: Callable[[], T]) -> T | None:
        """``step()``, tried again after each lost connection; None when asked to stop."""
        losses = 0
        while not self.engine.stopping:
            try:
                return step()
            except DBAPIError as err:
                if self.once or not self.engine.connection_lost(err):
                    raise
                losses += 1
                self._wait(err, losses)
        return None

    def _wait(self, err: DBAPIError, losses: int) -> None:
        first = max(self.poll, RECONNECT_FIRST_WAIT)
        wait = min(RECONNECT_MAX_WAIT, first * 2 ** min(losses - 1, 10))
        reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
        self.actx.err.print(
            f"worker: lost the database connection ({reason}); trying again in {wait:.1f} s",
            markup=False,
        )
        time.sleep(wait)


def _run_due(actx: AppContext, engine: Engine) -> Iterator[Outcome]:
    """One look for work; a line per campaign as it ends."""
    for o in publish.run_due(engine, actx.sessions):
        actx.console.print(
            f"campaign {o.campaign_id}: {o.status}, sent {o.sent}, "
            f"failed {o.failed}, skipped {o.skipped}"
            + (f" ({o.reason})" if o.reason else "")
            + (f"; next wave at {o.next_release:%Y-%m-%d %H:%M}Z" if o.next_release else "")
        )
        yield o
