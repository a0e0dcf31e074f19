"""How ``mailer serve`` runs the app on uvicorn, hardened for the open internet.

- logs: uvicorn's own configuration plus :class:`~mailer.web.access_log.RedactingFilter` on
  every handler, so no token or address reaches a log line; the app's ``mailer.*`` loggers
  go through the same handler (INFO and up);
- a request head must arrive within ``MAILER_HEADER_TIMEOUT`` (:mod:`mailer.web.http_guard`,
  uvicorn has no such option);
- at most ``MAILER_MAX_CONNECTIONS`` connections and requests at once (uvicorn's
  ``limit_concurrency``: past it, new requests get 503);
- no ``Server`` header; client addresses from ``X-Forwarded-For`` only when the peer is in
  ``FORWARDED_ALLOW_IPS`` (uvicorn's default: 127.0.0.1).
"""

from __future__ import annotations

import copy
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from mailer.config import Settings
from mailer.web.http_guard import with_header_timeout

__all__ = ["log_config", "serve", "server_config"]


def log_config() -> dict[str, Any]:
    """uvicorn's logging dictConfig with the redacting filter on every handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "mailer.web.access_log.RedactingFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["mailer"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def server_config(
    app: Any, settings: Settings, *, host: str, port: int, configure_logging: bool = True
) -> uvicorn.Config:
    """The uvicorn configuration ``mailer serve`` runs ``app`` with. ``configure_logging``
    False leaves the process's logging alone (a server inside a test process)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=with_header_timeout(settings.header_timeout),
        limit_concurrency=settings.max_connections,
        proxy_headers=True,
        server_header=False,
        log_config=log_config() if configure_logging else None,
    )


def serve(app: Any, settings: Settings, *, host: str, port: int) -> None:
    """Run until interrupted (SIGINT/SIGTERM: uvicorn's graceful shutdown)."""
    uvicorn.Server(server_config(app, settings, host=host, port=port)).run()
