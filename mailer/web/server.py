"""How ``mailer serve`` runs the app on uvicorn, hardened for the open internet.

- logs: uvicorn's own configuration plus :class:`~mailer.web.access_log.RedactingFilter` on
  every handler, so no token or address reaches a log line; the app's ``mailer.*`` loggers
  go through the same handler (INFO and up);
- a request head must arrive within ``MAILER_HEADER_TIMEOUT`` (:mod:`mailer.web.http_guard`,
  uvicorn has no such option);
- at most ``MAILER_MAX_CONNECTIONS`` connections and requests at once (uvicorn's
  ``limit_concurrency``: past it, new requests get 503);
- no ``Server`` header; client addresses from ``X-Forwarded-For`` only when the peer is in
  ``FORWARDED_ALLOW_IPS`` (uvicorn's default: 127.0.0.1);
- the start-up heap frozen out of the cycle collector (:func:`settle_heap`): a full
  collection walked the ~130,000 objects of the imported web stack, ~95 ms of CPU holding
  the GIL, a pause every request in flight waited out (the redirect's p99, issue 16);
- the GIL handed over every :data:`SWITCH_INTERVAL` instead of 5 ms: the event loop lets the
  GIL go at every socket call and log line, and while a writer thread (the redirect's
  intake, the webhook's) has Python work to do, each of those waited up to the interval
  to get it back, 32 answers in one pass of the loop up to 32 times that.
"""

from __future__ import annotations

import copy
import gc
import sys
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from mailer.config import Settings
from mailer.web.http_guard import with_header_timeout

__all__ = ["SWITCH_INTERVAL", "log_config", "serve", "server_config", "settle_heap"]

#: seconds a thread may keep the GIL while another waits for it (CPython's default: 0.005)
SWITCH_INTERVAL = 0.0005


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


def settle_heap() -> int:
    """Collect once, then move every object alive into the collector's permanent generation
    (``gc.freeze``); how many. What start-up made (modules, the app, SQLAlchemy's and
    pydantic's tables) lives as long as the process, yet each full collection walked all of
    it; afterwards a collection walks only what requests and the writer made since."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def serve(app: Any, settings: Settings, *, host: str, port: int) -> None:
    """Run until interrupted (SIGINT/SIGTERM: uvicorn's graceful shutdown)."""
    config = server_config(app, settings, host=host, port=port)
    config.load()  # the protocol and loop modules imported now, so they are frozen too
    settle_heap()
    sys.setswitchinterval(SWITCH_INTERVAL)
    uvicorn.Server(config).run()
