"""What `mailer send`, `mailer worker` and the `mailer campaigns` commands that send share:
the transport, running a campaign here with a progress bar, its report, the exit code."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mailer import heap
from mailer.cli.campaign_report import print_report
from mailer.cli.context import AppContext
from mailer.cli.exit_codes import ExitCode
from mailer.sending import campaigns as camp
from mailer.sending import publish
from mailer.sending.engine import Engine
from mailer.sending.engine import Progress as SendProgress
from mailer.sending.models import CampaignStatus
from mailer.sending.publish import Outcome
from mailer.transports import make_transport
from mailer.transports.base import Transport


@contextmanager
def transport_for(actx: AppContext) -> Iterator[Transport]:
    """The configured transport, closed after use."""
    transport = make_transport(actx.settings)
    try:
        yield transport
    finally:
        transport.close()


def exit_with(code: ExitCode) -> None:
    """End the command with ``code`` (nothing to do for OK)."""
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


@contextmanager
def graceful_stop(engine: Engine) -> Iterator[None]:
    """SIGTERM: finish the batch in flight, leave the rest queued."""

    def handler(signum: int, frame: FrameType | None) -> None:
        engine.request_stop()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


#: a campaign someone may still send (anything else has ended, for now or for good)
LIVE = (CampaignStatus.SCHEDULED, CampaignStatus.SENDING)


def _bar(actx: AppContext, verb: str) -> Progress:
    return Progress(
        TextColumn(verb),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}  {task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
        console=actx.console,
    )


def _rows(actx: AppContext, campaign_id: int) -> int:
    """The campaign's readers, known before the first batch (the bar's total)."""
    with actx.sessions() as s:
        return camp.report(s, campaign_id, failures=0).total


def run_with_progress(actx: AppContext, campaign_id: int) -> Outcome:
    """Run the campaign here; a Rich progress bar on a terminal, its total known from the
    start and advancing per answered message (from the send threads: Rich's update takes
    its own lock); the summary at the end."""
    with transport_for(actx) as transport:
        heap.before_long_run()  # the rendered issue and the transport are built
        if actx.interactive:
            with _bar(actx, "sending") as bar:
                task = bar.add_task("send", total=_rows(actx, campaign_id), failed=0, rate=0.0)

                def show(p: SendProgress) -> None:
                    bar.update(
                        task, total=p.total, completed=p.advanced, failed=p.failed, rate=p.rate
                    )

                outcome = _run(actx, transport, campaign_id, show)
        else:
            outcome = _run(actx, transport, campaign_id, None)
    print_report(actx, campaign_id)
    return outcome


def follow_with_progress(actx: AppContext, campaign_id: int) -> Outcome:
    """Follow a campaign another worker sends (a bar on a terminal) until it ends or that
    worker goes away; the summary when it has ended."""
    started = time.monotonic()
    if actx.interactive:
        with _bar(actx, "worker sending") as bar:
            task = bar.add_task("follow", total=_rows(actx, campaign_id), failed=0, rate=0.0)

            def show(o: Outcome) -> None:
                done = o.sent + o.failed + o.skipped
                rate = o.sent / max(time.monotonic() - started, 1e-9)
                bar.update(task, total=done + o.left, completed=done, failed=o.failed, rate=rate)

            outcome = publish.follow(actx.sessions, campaign_id, on_progress=show)
    else:
        outcome = publish.follow(actx.sessions, campaign_id)
    if outcome.status not in LIVE:
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
        on_answer=show,
        watch=graceful_stop,
    )
