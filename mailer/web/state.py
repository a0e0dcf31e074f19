"""What every request handler shares, kept on ``app.state.web`` (nothing global).

Routers of other parts of the app get it with ``web_state(request)``::

    @router.get("/admin")
    def admin(request: Request) -> ...:
        state = web_state(request)
        with state.sessions() as session: ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from mailer.access.handover import is_kept
from mailer.config import Settings
from mailer.render.tokens import Signer
from mailer.transports import make_transport
from mailer.transports.base import Transport
from mailer.web.csrf import CsrfGuard
from mailer.web.pages import Pages
from mailer.web.ratelimit import SlidingWindow

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class WebState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    signer: Signer
    pages: Pages
    csrf: CsrfGuard
    ip_limiter: SlidingWindow
    address_limiter: SlidingWindow
    #: test sends per token (desk and API share it): a test goes to any address with any
    #: content, so without a limit an editor's token would be a mail relay
    test_send_limiter: SlidingWindow
    #: new issue texts kept per token (API and desk share it): each is kept for good, so
    #: without a limit one token could fill the disk (MAILER_HANDOVER_LIMIT)
    handover_limiter: SlidingWindow
    #: desk sign-in attempts per client network: a token guessed at the form is slowed
    sign_in_limiter: SlidingWindow
    clock: Clock = system_clock
    injected_transport: Transport | None = None
    _made_transport: Transport | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> datetime:
        return self.clock()

    def timestamp(self) -> float:
        return self.clock().timestamp()

    def handover_wait(self, key: str, by: str) -> float | None:
        """Seconds until ``by`` may hand over another new issue text; None when it may now
        (or ``key`` is kept already: a retry or the same paste costs nothing)."""
        with self.sessions() as session:
            if is_kept(session, key):
                return None
        return self.handover_limiter.hit(by, self.timestamp())

    def transport(self) -> Transport:
        """The injected transport, or the configured one (MAILER_TRANSPORT), made on first use."""
        if self.injected_transport is not None:
            return self.injected_transport
        with self._lock:
            if self._made_transport is None:
                self._made_transport = make_transport(self.settings)
            return self._made_transport

    def close(self) -> None:
        """Release what the app made itself (not an injected transport)."""
        with self._lock:
            made, self._made_transport = self._made_transport, None
        if made is not None:
            made.close()
        self.engine.dispose()


def web_state(request: Request) -> WebState:
    state = request.app.state.web
    assert isinstance(state, WebState)
    return state


def client_ip(request: Request) -> str:
    """The peer address (uvicorn's proxy-headers support rewrites it behind a trusted proxy)."""
    return request.client.host if request.client else "unknown"
