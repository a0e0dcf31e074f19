"""`mailer init`: create or upgrade the database (Alembic, so only this command pays for it)."""

from __future__ import annotations

import typer

from mailer.cli.context import app_context
from mailer.cli.safe_text import safe_text
from subscribers.migrate import upgrade


def init(ctx: typer.Context) -> None:
    """Create or upgrade the database to the current schema (alembic upgrade head).

    Example: MAILER_DATABASE_URL=postgresql://postgres@127.0.0.1/test mailer init
    """
    actx = app_context(ctx)
    engine = actx.creating_engine()  # the one command that may create the database
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    actx.console.print(f"database ready: {safe_text(where)}", markup=False)
