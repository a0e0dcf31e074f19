"""A webhook receiver on loopback for the webhook tests: a real HTTP server that verifies the
Standard Webhooks signature with the reference package and answers as a test tells it to
(well, 500, hang, drip, redirect, a huge body). It can be stopped and started again on the
same port (a receiver that was down comes back)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    event: Any  # the verified, parsed JSON; None when verification failed
    error: str | None


@dataclass
class Receiver:
    secret: str | None = None
    mode: str = "ok"  # ok | 500 | gone | hang | drip | redirect | huge | disconnect | truncated
    port: int = 0
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def reserve(self) -> Receiver:
        """Pick a free port without listening on it yet (the receiver is 'down')."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        return self

    def start(self) -> Receiver:
        if not self.port:
            self.reserve()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                event, error = receiver.verify(body, headers)
                receiver.received.append(Received(headers, body, event, error))
                receiver.answer(self, error)

        self._release.clear()

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the dispatcher opens a connection per delivery

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def verify(self, body: bytes, headers: dict[str, str]) -> tuple[Any, str | None]:
        if self.secret is None:
            return None, "no secret"
        try:
            return Webhook(self.secret).verify(body, headers), None
        except WebhookVerificationError as err:
            return None, str(err)

    def answer(self, h: BaseHTTPRequestHandler, error: str | None) -> None:
        mode = self.mode
        if mode == "hang":
            self._release.wait(30)
            return
        if mode == "drip":  # a status line, then a header byte a second, for ever
            h.wfile.write(b"HTTP/1.1 200 OK\r\n")
            h.wfile.flush()
            for _ in range(30):
                if self._release.wait(0.2):
                    return
                try:
                    h.wfile.write(b"X")
                    h.wfile.flush()
                except OSError:
                    return
            return
        if mode == "disconnect":  # reads the request, hangs up without a word
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "truncated":  # 200 promising 100 bytes, then gone after 10
            h.send_response(200)
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.write(b"0123456789")
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "redirect":
            h.send_response(307)
            h.send_header("Location", "http://127.0.0.1:9/elsewhere")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if mode == "huge":  # 200, then far more body than anyone should read
            h.send_response(200)
            h.send_header("Content-Length", str(1 << 30))
            h.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(1 << 14):
                    h.wfile.write(chunk)
            except OSError:
                pass
            return
        code = {"500": 500, "gone": 410}.get(mode, 401 if error else 204)
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def verified(self, type_: str | None = None) -> list[Any]:
        return [
            r.event
            for r in self.received
            if r.event is not None and (type_ is None or r.event["type"] == type_)
        ]

    def wait_for(self, type_: str, timeout: float = 60.0) -> Any:
        """The first verified event of ``type_``, waiting for it (a deadline, not a goal)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.verified(type_)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no verified {type_} within {timeout} s: {self.received}")
