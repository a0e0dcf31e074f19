"""`mailer serve`: the reader pages (and whatever routers the app factory includes)."""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

import typer

from mailer.cli.context import app_context
from mailer.config import Settings
from mailer.errors import ConfigError


def is_loopback(host: str) -> bool:
    """True when only this machine can reach ``host`` (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname or 0.0.0.0 / :: : reachable from outside


def exposed_as(settings: Settings, host: str) -> str | None:
    """What outsiders reach, or None when only this machine does: the listening address
    when it is not loopback, else MAILER_BASE_URL when that is public (a reverse proxy in
    front of loopback, how production runs it, serves the pages to everyone)."""
    if not is_loopback(host):
        return f"on {host}"
    public = urlsplit(settings.base_url).hostname or ""
    return None if is_loopback(public) else f"{settings.public_base} (MAILER_BASE_URL)"


def check_exposure(settings: Settings, host: str) -> None:
    """ConfigError (one line) when serving on ``host`` would let outsiders forge readers'
    links (no strong key of our own) or feed us SNS events from any AWS topic (no
    allowlist)."""
    where = exposed_as(settings, host)
    if where is None:
        return
    settings.require_real_key(f"serve {where}")
    if not settings.sns_topic_arns:
        raise ConfigError(
            f"MAILER_SNS_TOPIC_ARNS is empty: refusing to serve {where}, where the SNS "
            "webhook would take signed events from any AWS topic; set it to your SES "
            "feedback topic ARN(s), comma-separated"
        )


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
    On any address but loopback, or for a public MAILER_BASE_URL (behind a proxy),
    a strong MAILER_SECRET_KEY (see `mailer keygen`) and MAILER_SNS_TOPIC_ARNS must be set.

    Example: MAILER_BASE_URL=https://news.example.org mailer serve --host 0.0.0.0 --port 8000
    """
    # Imported here: the web stack costs ~0.4 s to import (-X importtime), which every
    # other command would pay at start-up.
    from mailer.web.app import create_app
    from mailer.web.server import serve as run_server

    actx = app_context(ctx)
    check_exposure(actx.settings, host)
    web = create_app(actx.settings)  # ConfigError -> one line from mailer.cli.main
    run_server(web, actx.settings, host=host, port=port)  # mailer.web.server: hardened uvicorn
