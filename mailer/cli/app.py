"""The root Typer app. Nothing registers on it: the command groups are listed in
:data:`mailer.cli.COMMANDS` and imported only when used (:mod:`mailer.cli.lazy`)."""

from __future__ import annotations

import typer

from mailer.cli.lazy import LazyGroup

app = typer.Typer(
    name="mailer",
    cls=LazyGroup,
    help="brief-mailer: deliver a newsletter issue to its list, well.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
