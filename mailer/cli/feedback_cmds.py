"""`mailer feedback poll|ingest`: thin wrappers over mailer.feedback.queue and
mailer.feedback.rules."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from botocore.exceptions import NoRegionError

from mailer import safejson
from mailer.cli.context import AppContext, app_context
from mailer.errors import ConfigError, InputError, MailerError
from mailer.feedback.events import SetupNotice, parse_payload
from mailer.feedback.rules import apply_payload
from mailer.ops.outcome_words import in_words
from mailer.ops.simulate import Kind, simulated_event
from subscribers.models import utcnow

feedback_app = typer.Typer(
    help="Bounces and complaints: take SES events in from a queue or from files.",
    no_args_is_help=True,
)


@feedback_app.command("poll")
def feedback_poll(
    ctx: typer.Context,
    queue_url: Annotated[str, typer.Option("--queue-url", help="The SQS queue SNS feeds.")],
    once: Annotated[
        bool, typer.Option("--once", help="Drain the queue, then exit (cron, tests).")
    ] = False,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts", min=1, help="Receives before a failing message is set aside."
        ),
    ] = 5,
    wait: Annotated[
        int, typer.Option("--wait", min=0, max=20, help="Long-poll seconds per receive.")
    ] = 20,
    retry_delay: Annotated[
        int, typer.Option("--retry-delay", min=0, help="Seconds before a failed one returns.")
    ] = 30,
    verify_sns: Annotated[
        bool,
        typer.Option(
            "--verify-sns/--no-verify-sns",
            help="Also check SNS signatures (needs SNS envelopes, not raw delivery).",
        ),
    ] = False,
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="SQS endpoint (local test servers).")
    ] = None,
) -> None:
    """Long-poll an SQS queue of SES events; apply each in one transaction, delete after commit.

    Messages that can never apply (not JSON, not an SES event, forged) or still fail on the
    --max-attempts-th receive are set aside into the feedback_poison table and logged.

    Example: mailer feedback poll --queue-url https://sqs.us-east-1.amazonaws.com/111122223333/ses-feedback
    """
    # Imported here: the poller (SNS verification, cryptography) costs ~65 ms to import
    # (-X importtime), which `feedback ingest` would pay for nothing.
    from mailer.feedback.queue import QueuePoller

    actx = app_context(ctx)
    _log_to_stderr()
    poller = QueuePoller(
        _sqs_client(actx, queue_url, endpoint_url),
        queue_url,
        actx.sessions,
        actx.settings,
        max_attempts=max_attempts,
        wait_seconds=wait,
        retry_delay=retry_delay,
        verify=verify_sns,
    )
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    stats = poller.run(once=once, stop=stop)
    actx.console.print(stats.summary())


@feedback_app.command("ingest")
def feedback_ingest(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="JSON files of events.", exists=True)],
) -> None:
    """Apply saved SES events: a bare event or an SNS envelope per file, a JSON array of them,
    or one per line. Each is applied in its own transaction; already-seen events are skipped.
    Files are trusted (an operator's replay): SNS signatures are not checked.

    Example: mailer feedback ingest bounce-2026-05-14.json complaints.jsonl
    """
    actx = app_context(ctx)
    counts = {"applied": 0, "duplicate": 0, "notice": 0}
    errors: list[str] = []
    unmatched: list[str] = []
    for path in files:
        try:
            payloads = list(_payloads(path))
        except MailerError as err:  # unreadable, or JSON too deep or absurd: the whole file
            errors.append(str(err))
            continue
        for where, payload in payloads:
            try:
                with actx.sessions.begin() as session:
                    outcome = apply_payload(session, payload, actx.settings)
            except MailerError as err:
                errors.append(f"{where}: {err}")
                continue
            counts[outcome.status] += 1
            if outcome.status == "applied" and not outcome.matched:
                unmatched.append(f"{where}: {outcome.event_type} {_why_unmatched(payload)}")
    for line in errors:
        actx.err.print(line, markup=False, highlight=False)
    for line in unmatched:
        actx.err.print(f"matched no delivery: {line}", markup=False, highlight=False)
    actx.console.print(
        f"applied {counts['applied']}, already seen {counts['duplicate']}, "
        f"setup notices {counts['notice']}, failed {len(errors)}"
        + (f"; {len(unmatched)} of them matched no delivery" if unmatched else "")
    )
    if unmatched:
        actx.err.print(
            "an event is matched by mail.messageId (the id the send recorded: SES's MessageId, "
            "or the outbox's .eml file name such as 17.eml), else by its 'delivery' and "
            "'campaign' tags; stored anyway, it counts in `mailer stats` as unmatched",
            markup=False,
        )
    if errors:
        raise typer.Exit(1)


@feedback_app.command("simulate")
def feedback_simulate(
    ctx: typer.Context,
    delivery_id: Annotated[int, typer.Argument(help="A sent delivery (campaigns show N).")],
    kind: Annotated[Kind, typer.Argument(help="What SES would report.")],
) -> None:
    """Make up the SES event KIND about one of our sent deliveries and apply it as a real one
    is: try the whole feedback loop without SES. A bounce (permanent) suppresses the
    address, a complaint also unsubscribes the reader, a delivery is recorded.

    Example: mailer feedback simulate 17 bounce
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        event = simulated_event(session, delivery_id, kind, utcnow())
        outcome = apply_payload(session, event, actx.settings)
    done = in_words("; ".join(outcome.actions)) or "recorded"
    actx.console.print(
        f"{kind} of delivery {delivery_id} ({event['mail']['destination'][0]}): "
        f"{outcome.status}: {done}",
        markup=False,
    )


def _why_unmatched(payload: Any) -> str:
    """Why an applied event found no delivery, in the terms of the event itself."""
    event = parse_payload(payload)
    if isinstance(event, SetupNotice):  # never unmatched; here for the type checker
        return "is a setup message"
    said = f"has mail.messageId {event.ses_message_id!r}, which no send recorded"
    if event.delivery_tag is None:
        return f"{said}, and no 'delivery' tag"
    return (
        f"{said}, and its 'delivery' tag {event.delivery_tag!r} names no delivery of that "
        "campaign with that message id"
    )


# -- helpers -----------------------------------------------------------------------------------


def _payloads(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, payload) for each event in a file: object, array, or JSON Lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read: {err}") from err
    try:
        data = safejson.loads(text, what=f"{path}")
    except safejson.JSONSyntaxError:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2:  # not JSON Lines either: hand it on, the parser names the problem
            yield str(path), text
            return
        for n, line in lines:
            yield f"{path}:{n}", line
        return
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield f"{path}[{i}]", item if isinstance(item, (dict, str)) else json.dumps(item)
    elif isinstance(data, (dict, str)):
        yield str(path), data
    else:
        raise InputError(f"{path}: expected a JSON object or array of events")


def _sqs_client(actx: AppContext, queue_url: str, endpoint_url: str | None) -> Any:
    # Imported here: boto3 (~100 ms) and botocore.config (~35 ms), measured with
    # -X importtime: `feedback ingest` would pay them for nothing.
    import boto3
    from botocore.config import Config

    region = actx.settings.ses_region or _region_of(queue_url)
    try:
        return boto3.client(
            "sqs",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, read_timeout=30),
        )
    except NoRegionError as err:
        raise ConfigError(
            "no AWS region for SQS: set MAILER_SES_REGION (or AWS_REGION / AWS_DEFAULT_REGION)"
        ) from err


def _region_of(queue_url: str) -> str | None:
    """https://sqs.<region>.amazonaws.com/<account>/<name> -> <region>."""
    host = queue_url.split("//", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and parts[2] == "amazonaws":
        return parts[1]
    return None


def _log_to_stderr() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
