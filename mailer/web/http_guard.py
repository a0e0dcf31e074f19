"""uvicorn's HTTP protocol with a header timeout: a request head must arrive in time.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and can answer 503
past ``limit_concurrency``, but it waits for a request's headers forever: 800 clients
dripping one header byte now and then hold 800 connections open indefinitely (slowloris),
and since uvicorn counts them against ``limit_concurrency`` they end up turning real
readers away too. This subclass of uvicorn's httptools protocol starts a timer when a
connection opens, and again when the first byte of each further request arrives; the
timer is cancelled once the head is complete. When it fires, the client gets
``408 Request Timeout`` (if it had sent anything) and the connection is closed.

Bodies are not timed here: the body limit middleware caps their size, and the app reads
them as they come.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeaderTimeoutProtocol"]

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 25\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Request headers too slow\n"
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose request head is too slow.

    The limit is ``header_timeout`` seconds (a class attribute: uvicorn builds one
    protocol object per connection from the class, so :func:`with_header_timeout` makes a
    subclass with the configured value).
    """

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # some bytes of the current head have arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if data and self._head_timer is None and self._between_requests():
            self._arm()  # first byte of a further request on a kept-alive connection
        self._head_started = self._head_started or bool(data)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._head_started = False
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the timer ---------------------------------------------------------------------

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self.transport.write(_REQUEST_TIMEOUT)
        self.logger.debug("closed a connection: request head took over %gs", self.header_timeout)
        self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to hand to uvicorn (``Config(http=...)``) for this timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
