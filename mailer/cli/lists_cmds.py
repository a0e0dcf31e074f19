"""`mailer lists`: thin wrappers over subscribers.store.

Whatever came from the store (names, addresses) is printed through mailer.cli.safe_text,
never raw and never as markup.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from mailer.cli.context import app_context
from mailer.cli.safe_text import safe_cell, safe_text
from subscribers import store

lists_app = typer.Typer(help="Mailing lists.", no_args_is_help=True)


@lists_app.command("create")
def lists_create(
    ctx: typer.Context,
    slug: str,
    name: Annotated[str, typer.Option("--name", help="Display name of the list.")],
    from_address: Annotated[str, typer.Option("--from", help='From header: "Name <addr>".')],
    reply_to: Annotated[str | None, typer.Option("--reply-to")] = None,
    double_opt_in: Annotated[
        bool, typer.Option("--double-opt-in/--no-double-opt-in", help="Require confirmation.")
    ] = True,
) -> None:
    """Create a mailing list.

    Example: mailer lists create china-brief --name "The China Brief" --from "Brief <b@example.org>"
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        mlist = store.create_list(
            session,
            slug,
            name=name,
            from_address=from_address,
            reply_to=reply_to,
            double_opt_in=double_opt_in,
        )
        actx.console.print(
            f"created list {safe_text(mlist.slug)} ({safe_text(mlist.name)}) "
            f"from {safe_text(mlist.from_address)}",
            markup=False,
        )


@lists_app.command("show")
def lists_show(ctx: typer.Context) -> None:
    """Show every list with its subscriber counts.

    Example: mailer lists show
    """
    actx = app_context(ctx)
    with actx.sessions() as session:
        rows = store.list_counts(session)
    # the slug is what every other command takes: never truncate it
    width = max((len(m.slug) for m, _ in rows), default=4)
    table = Table(
        Column("slug", no_wrap=True, min_width=width),
        "name",
        "from",
        "double opt-in",
        "active",
        "pending",
        "unsubscribed",
    )
    for m, counts in rows:
        table.add_row(
            safe_cell(m.slug),
            safe_cell(m.name),
            safe_cell(m.from_address),
            "yes" if m.double_opt_in else "no",
            str(counts.get("active", 0)),
            str(counts.get("pending", 0)),
            str(counts.get("unsubscribed", 0)),
        )
    actx.console.print(table)
