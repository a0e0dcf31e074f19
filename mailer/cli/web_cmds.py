"""`mailer serve`: the reader pages (and whatever routers the app factory includes)."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.app import app
from mailer.cli.context import app_context


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=1, max=65535)] = 8000,
) -> None:
    """Serve the reader web pages (subscribe, confirm, unsubscribe, preferences, archive).

    MAILER_BASE_URL is the public origin used in every link. Behind a reverse proxy, set
    FORWARDED_ALLOW_IPS to its address so client IPs (rate limits, consent ledger) are real.

    Example: MAILER_BASE_URL=https://news.example.org mailer serve --host 0.0.0.0 --port 8000
    """
    import uvicorn

    from mailer.web.app import create_app

    actx = app_context(ctx)
    web = create_app(actx.settings)  # ConfigError -> one line from mailer.cli.main
    uvicorn.run(web, host=host, port=port, proxy_headers=True, server_header=False)
