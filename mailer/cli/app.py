"""The root Typer app; command modules import it and add their groups."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mailer",
    help="brief-mailer: deliver a newsletter issue to its list, well.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
