"""`mailer webhooks`: thin wrappers over mailer.webhooks.endpoints (add, list, remove, test,
log, retry). `mailer worker` delivers the events (mailer.webhooks.dispatch).

URLs and errors from the store or a receiver are printed through mailer.cli.safe_text.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailer.cli.context import app_context
from mailer.cli.exit_codes import ExitCode
from mailer.cli.running import exit_with
from mailer.cli.safe_text import safe_cell, safe_text
from mailer.webhooks import endpoints
from mailer.webhooks.dispatch import Policy
from subscribers.outbox import EVENT_TYPES

webhooks_app = typer.Typer(
    help="Webhooks out: signed events (campaign.done, ...) posted to your endpoints.",
    no_args_is_help=True,
)


@webhooks_app.command("add")
def webhooks_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The receiver: an http:// or https:// URL.")],
    events: Annotated[
        str,
        typer.Option(
            "--events", help="Comma-separated event names: " + ", ".join(EVENT_TYPES) + "."
        ),
    ],
) -> None:
    """Add an endpoint; prints its signing secret once (keep it: it is not shown again).

    Example: mailer webhooks add https://hooks.example.com/b --events campaign.done,guard.tripped
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        endpoint = endpoints.add(session, url, events)
        endpoint_id, secret, types = endpoint.id, endpoint.secret, endpoint.event_types
    actx.console.print(
        f"webhook {endpoint_id}: {safe_text(endpoints.shown_url(url))}", markup=False
    )
    actx.console.print(f"events: {', '.join(types)}", markup=False)
    actx.console.print(f"secret: {secret}", markup=False)
    actx.err.print(
        "keep the secret: receivers verify the webhook-signature header with it; "
        "it is not shown again",
        markup=False,
    )


@webhooks_app.command("list")
def webhooks_list(ctx: typer.Context) -> None:
    """List endpoints with their events and deliveries (pending, delivered, failed).

    Example: mailer webhooks list
    """
    actx = app_context(ctx)
    table = Table("id", "url", "events", "enabled", "pending", "delivered", "failed", "since")
    with actx.sessions() as session:
        for row in endpoints.list_endpoints(session):
            e = row.endpoint
            table.add_row(
                str(e.id),
                safe_cell(endpoints.shown_url(e.url)),
                safe_cell(", ".join(e.event_types)),
                "yes" if e.enabled else "no",
                str(row.counts.get("pending", 0)),
                str(row.counts.get("delivered", 0)),
                str(row.counts.get("failed", 0)),
                e.created_at.isoformat(timespec="seconds"),
            )
    actx.console.print(table)


@webhooks_app.command("remove")
def webhooks_remove(
    ctx: typer.Context, endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id.")]
) -> None:
    """Remove an endpoint with its undelivered events and its log.

    Example: mailer webhooks remove 3
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        url = endpoints.remove(session, endpoint_id).url
    shown = safe_text(endpoints.shown_url(url))
    actx.console.print(f"webhook {endpoint_id} removed ({shown})", markup=False)


@webhooks_app.command("enable")
def webhooks_enable(
    ctx: typer.Context, endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id.")]
) -> None:
    """Enable an endpoint again (after a 410 Gone answer or `disable`); its waiting
    deliveries go out.

    Example: mailer webhooks enable 3
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        endpoints.set_enabled(session, endpoint_id, True)
    actx.console.print(f"webhook {endpoint_id} enabled")


@webhooks_app.command("disable")
def webhooks_disable(
    ctx: typer.Context, endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id.")]
) -> None:
    """Disable an endpoint: no new events for it; its pending deliveries wait.

    Example: mailer webhooks disable 3
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        endpoints.set_enabled(session, endpoint_id, False)
    actx.console.print(f"webhook {endpoint_id} disabled")


@webhooks_app.command("test")
def webhooks_test(
    ctx: typer.Context, endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id.")]
) -> None:
    """Post a signed webhook.test event to an endpoint now; exits 1 unless it answers 2xx.

    Example: mailer webhooks test 3
    """
    actx = app_context(ctx)
    with actx.sessions() as session:
        endpoint = endpoints.get(session, endpoint_id)
        session.expunge(endpoint)
    answer = endpoints.test(endpoint, Policy.from_settings(actx.settings))
    if answer.ok:
        actx.console.print(f"webhook {endpoint_id}: HTTP {answer.status_code}", markup=False)
        return
    actx.err.print(f"webhook {endpoint_id} failed: {safe_text(answer.error or '')}", markup=False)
    exit_with(ExitCode.ERROR)


@webhooks_app.command("log")
def webhooks_log(
    ctx: typer.Context,
    endpoint_id: Annotated[
        int | None, typer.Option("--endpoint", help="Only this endpoint's attempts.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed attempts.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10000, help="How many, newest first.")
    ] = 50,
) -> None:
    """The delivery log, newest first: each attempt's answer and when the next is due.

    Example: mailer webhooks log --failed --limit 20
    """
    actx = app_context(ctx)
    table = Table("at", "endpoint", "event", "id", "attempt", "answer", "next attempt", "state")
    with actx.sessions() as session:
        rows = endpoints.log_rows(session, endpoint_id=endpoint_id, failed_only=failed, limit=limit)
    for r in rows:
        table.add_row(
            r.at.isoformat(timespec="seconds"),
            str(r.endpoint_id),
            r.event_type,
            r.event_uid,
            str(r.attempt),
            safe_cell(r.error or f"HTTP {r.status_code}"),
            r.next_attempt_at.isoformat(timespec="seconds") if r.next_attempt_at else "-",
            r.state,
        )
    actx.console.print(table)


@webhooks_app.command("retry")
def webhooks_retry(
    ctx: typer.Context,
    endpoint_id: Annotated[
        int | None, typer.Option("--endpoint", help="Only this endpoint's deliveries.")
    ] = None,
) -> None:
    """Queue deliveries that used up their attempts again (after a receiver was fixed).

    Example: mailer webhooks retry --endpoint 3
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        n = endpoints.retry_failed(session, endpoint_id)
    actx.console.print(f"{n} failed deliveries queued again; `mailer worker` sends them")
