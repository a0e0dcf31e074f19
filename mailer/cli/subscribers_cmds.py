"""`mailer subscribers`: thin wrappers over subscribers.store, subscribers.importer and
mailer.feedback.erasure.

Whatever came from the store or from a file (names, addresses, CSV cells) is printed through
mailer.cli.safe_text, never raw and never as markup.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mailer.cli.context import AppContext, app_context
from mailer.cli.safe_text import safe_json, safe_text
from mailer.errors import MailerError
from mailer.feedback import erasure
from mailer.sending import system_mail
from mailer.transports import make_transport
from mailer.transports.base import Transport
from subscribers import importer, store
from subscribers.models import utcnow

subscribers_app = typer.Typer(
    help="Subscribers: add, import, export, show, erase.", no_args_is_help=True
)


@contextmanager
def _transport(actx: AppContext, done: str) -> Iterator[Transport]:
    """The configured transport for confirmation mails, closed after use. One that cannot
    be made (SES without a real key, ...) is an error that says what was stored already:
    the readers stay pending, and the same command run again mails them."""
    try:
        transport = make_transport(actx.settings)
    except MailerError as err:
        raise type(err)(f"{done} no confirmation mail can be sent: {err}") from err
    try:
        yield transport
    finally:
        transport.close()


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: str,
    list_slug: Annotated[str, typer.Option("--list", help="List slug.")],
    name: Annotated[
        str | None, typer.Option("--name", help="The reader's name (for %%name%%).")
    ] = None,
    confirmed: Annotated[
        bool, typer.Option("--confirmed", help="Consent already given: active at once.")
    ] = False,
    resubscribe: Annotated[
        bool, typer.Option("--resubscribe", help="Override a suppression or unsubscribe.")
    ] = False,
    mail: Annotated[
        bool,
        typer.Option("--mail/--no-mail", help="Send a pending reader the confirmation mail."),
    ] = True,
) -> None:
    """Add one subscriber to a list (pending until confirmed on a double opt-in list: the
    reader gets the confirmation mail, at most 3 a day per address).

    Example: mailer subscribers add reader@example.com --list china-brief --confirmed
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        mlist = store.get_list(session, list_slug)
        result = store.subscribe(
            session, email, mlist, name=name, confirmed=confirmed, resubscribe=resubscribe
        )
        line = (
            f"{safe_text(result.subscriber.email)}: {result.subscription.status} "
            f"on {safe_text(mlist.slug)}"
        )
        ids = (result.subscriber.id, mlist.id)
    if result.needs_confirmation and mail:
        with _transport(actx, f"{line}, but") as transport:
            sent = system_mail.request_confirmation(
                actx.sessions, actx.settings, transport, *ids, now=utcnow()
            )
        line += (
            " (confirmation mail sent)"
            if sent
            else " (no confirmation mail: sent 3 today already, or sending failed)"
        )
    actx.console.print(line, markup=False)


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with a header row containing 'email'.")],
    list_slug: Annotated[str, typer.Option("--list", help="List slug.")],
    confirmed: Annotated[
        bool, typer.Option("--confirmed", help="Consent already given: active at once.")
    ] = False,
    resubscribe: Annotated[
        bool,
        typer.Option(
            "--resubscribe", help="Override a suppression or unsubscribe (consent given anew)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not list bad rows.")] = False,
    mail: Annotated[
        bool,
        typer.Option(
            "--mail/--no-mail",
            help="Without --confirmed: send each pending reader never mailed the confirmation.",
        ),
    ] = True,
) -> None:
    """Import subscribers from a CSV file; bad rows are skipped and reported by line.
    Without --confirmed, pending readers get the confirmation mail (once: an import run
    again mails nobody twice).

    Example: mailer subscribers import readers.csv --list china-brief --confirmed
    """
    actx = app_context(ctx)

    def on_problem(p: importer.Problem) -> None:
        if not quiet:
            actx.err.print(
                f"line {p.line}: {safe_text(p.reason)}: {safe_text(p.value)}",
                markup=False,
                highlight=False,
            )

    size = file.stat().st_size if file.is_file() else 0
    show = actx.interactive and size > 0
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeRemainingColumn(),
        console=actx.console,
        disable=not show,
    )
    with progress:
        task = progress.add_task("import", total=size, rows=0)
        report = importer.import_csv(
            actx.sessions,
            file,
            list_slug,
            confirmed=confirmed,
            resubscribe=resubscribe,
            on_problem=on_problem,
            on_progress=lambda done, rows: progress.update(task, completed=done, rows=rows),
        )
    skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(report.skipped.items()))
    actx.console.print(
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
        f"skipped {report.skipped_total}" + (f" ({skipped})" if skipped else "")
    )
    if mail and not confirmed:
        with actx.sessions() as session:
            mlist = store.get_list(session, list_slug)
        with _transport(actx, "imported, but") as transport:
            sent, held = system_mail.confirm_unmailed(
                actx.sessions, actx.settings, transport, mlist, now=utcnow()
            )
        if sent or held:
            actx.console.print(
                f"confirmation mails: {sent} sent"
                + (f", {held} not sent (limit or failure)" if held else "")
            )


@subscribers_app.command("export")
def subscribers_export(
    ctx: typer.Context,
    list_slug: Annotated[str, typer.Option("--list", help="List slug.")],
    status: Annotated[
        str | None, typer.Option("--status", help="active, pending or unsubscribed.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File (default stdout).")
    ] = None,
) -> None:
    """Export a list as CSV (email, name, status, since, time_zone); formula cells are neutralized
    (and `subscribers import` takes the file back as it was). On a terminal, control
    characters are shown escaped.

    Example: mailer subscribers export --list china-brief --status active -o active.csv
    """
    actx = app_context(ctx)
    out: TextIO = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    # a file or a pipe gets the data exactly; a person at a terminal sees it escaped
    on_screen = output is None and actx.interactive
    try:
        writer = csv.writer(out)
        writer.writerow(store.EXPORT_COLUMNS)
        with actx.sessions() as session:
            mlist = store.get_list(session, list_slug)
            for row in store.export_rows(session, mlist, status):
                writer.writerow([safe_text(cell) for cell in row] if on_screen else row)
    finally:
        if output:
            out.close()


@subscribers_app.command("show")
def subscribers_show(
    ctx: typer.Context,
    email: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Everything held about one person (GDPR access request).

    Example: mailer subscribers show reader@example.com --json
    """
    actx = app_context(ctx)
    with actx.sessions() as session:
        data = store.describe_subscriber(session, email)
    if as_json:
        print(safe_json(data))
        return
    lines = [
        f"{safe_text(data['email'])}  name: {safe_text(data['name'] or '-')}"
        f"  time zone: {safe_text(data['time_zone'] or '-')}"
    ]
    for s in data["subscriptions"]:
        lines.append(f"  {safe_text(s['list'])}: {s['status']} since {s['created_at']}")
    if data["suppression"]:
        lines.append(f"  suppressed: {safe_text(data['suppression']['reason'])}")
    for e in data["consent_events"]:
        lines.append(
            f"  {e['at']} {safe_text(e['action'])} {safe_text(e['list'] or '')} "
            f"via {safe_text(e['source'])}"
        )
    for line in lines:
        actx.console.print(line, markup=False, highlight=False)


@subscribers_app.command("erase")
def subscribers_erase(
    ctx: typer.Context,
    email: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Erase a person (GDPR): deletes their data, keeps a salted-hash tombstone.

    Example: mailer subscribers erase reader@example.com --yes
    """
    actx = app_context(ctx)
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Erase everything held about {safe_text(email)}?", abort=True)
    with actx.sessions.begin() as session:
        erasure.erase(session, email)
    actx.console.print(
        f"erased {safe_text(email)}; a tombstone keeps it from being re-imported", markup=False
    )
