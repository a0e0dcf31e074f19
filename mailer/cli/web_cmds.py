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
    A request head must arrive within MAILER_HEADER_TIMEOUT; at most MAILER_MAX_CONNECTIONS
    are served at once; tokens and query strings never reach the logs.

    Example: MAILER_BASE_URL=https://news.example.org mailer serve --host 0.0.0.0 --port 8000
    """
    # Imported here: the web stack costs ~0.4 s to import (-X importtime), which every
    # other command would pay at start-up.
    from mailer.web.app import create_app
    from mailer.web.server import serve as run_server

    actx = app_context(ctx)
    web = create_app(actx.settings)  # ConfigError -> one line from mailer.cli.main
    run_server(web, actx.settings, host=host, port=port)  # mailer.web.server: hardened uvicorn
