"""`mailer tokens`: API tokens for `/api/v1` and the web desk, thin wrappers over
:mod:`mailer.access.tokens`. The token is printed once, on its own line on stdout (so
``TOKEN=$(mailer tokens create ...)`` works); the store keeps only its hash.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from mailer.access import tokens
from mailer.cli.context import app_context
from mailer.cli.safe_text import safe_cell

tokens_app = typer.Typer(
    help="API tokens: create (shown once), list, revoke.", no_args_is_help=True
)


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Who or what uses it, e.g. pipeline.")],
    role: Annotated[
        str, typer.Option("--role", help="editor (issues, campaigns, lists) or ops (all).")
    ],
) -> None:
    """Create a token and print it once (it cannot be shown again).

    Example: mailer tokens create --name pipeline --role editor
    """
    actx = app_context(ctx)
    raw = tokens.create_token(actx.sessions, name, tokens.parse_role(role))
    actx.err.print(
        f"token {name} ({role.strip().lower()}) created; it is shown once, keep it now:",
        markup=False,
        highlight=False,
    )
    typer.echo(raw)


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every token with its role, when it was created and last used, and if it is revoked.

    Example: mailer tokens list
    """
    actx = app_context(ctx)
    found = tokens.list_tokens(actx.sessions)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": t.name,
                        "role": t.role.value,
                        "created_at": t.created_at.isoformat(),
                        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                    }
                    for t in found
                ],
                indent=2,
            )
        )
        return
    table = Table("name", "role", "created", "last used", "state")
    for t in found:
        table.add_row(
            safe_cell(t.name),
            t.role.value,
            t.created_at.isoformat(timespec="minutes"),
            t.last_used_at.isoformat(timespec="minutes") if t.last_used_at else "never",
            "active" if t.active else f"revoked {t.revoked_at:%Y-%m-%d %H:%M}Z",
        )
    actx.console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, name: str) -> None:
    """Revoke a token: from now on it is refused (401). The name stays taken.

    Example: mailer tokens revoke pipeline
    """
    actx = app_context(ctx)
    tokens.revoke_token(actx.sessions, name)
    actx.console.print(f"token {name} revoked", markup=False, highlight=False)
