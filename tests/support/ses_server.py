"""A small SES-v2-compatible HTTP server for tests and benchmarks, with fault switches.

boto3's ``sesv2`` client talks to it unchanged (``endpoint_url=server.url``; any SigV4
credentials are accepted). Every request is validated against botocore's own service model
(:mod:`tests.support.ses_model`); a request that violates it gets ``400
BadRequestException`` naming the member. Implemented operations:

    SendEmail (Raw, Simple, inline Template)   SendBulkEmail (inline template)
    GetAccount                                 GetEmailIdentity
    GetConfigurationSet                        GetConfigurationSetEventDestinations
    ListSuppressedDestinations                 PutSuppressedDestination
    DeleteSuppressedDestination

Every accepted message is recorded (:class:`SentMessage`: recipients, SES message id, raw
bytes or the bulk entry's template and data, headers, tags, time), so tests can assert
exactly-once delivery from the server's side. Calls are counted by operation and outcome.

Switches (:class:`ServerConfig`, thread-safe, changeable while running): ``latency`` (s) plus
``spike_probability``/``spike_latency``; ``throttle_probability`` (429
TooManyRequestsException); ``error_probability`` (500 InternalFailure, nothing sent);
``error_after_accept_probability`` (the message IS recorded, then 500: what makes duplicates
on retry); ``reject_addresses`` / ``reject_pattern`` (MessageRejected, or MESSAGE_REJECTED
per bulk entry); ``account_suspended``; ``sending_paused``; ``mail_from_unverified``;
``max_send_rate`` / ``max_24h`` / ``sent_last_24h_offset`` (what GetAccount reports);
``enforce_rate`` (429 beyond max_send_rate) and ``enforce_quota`` (LimitExceeded "Daily
message quota exceeded." beyond max_24h); ``identities`` (None: every identity verified;
else name -> GetEmailIdentity overrides); ``configuration_sets`` (None: any name exists;
else name -> event destinations); ``access_keys`` (None: any; else only these key ids);
``seed``; ``keep_raw`` (default true; set false for runs of tens of thousands of raw
messages, which would otherwise all stay in memory). :meth:`SesServer.fail_next` queues
exact errors for deterministic tests.

In process::

    with SesServer(latency=0.02) as server:
        client = boto3.client("sesv2", endpoint_url=server.url, region_name="us-east-1")
        server.configure(throttle_probability=0.1)
        server.messages(); server.stats(); server.reset()

As a separate process (for tests that SIGKILL the sender)::

    python -m tests.support.ses_server --port 0 [--latency 0.02] [--config JSON]

prints ``ses_server listening on http://127.0.0.1:PORT`` as its first stdout line and
serves until SIGTERM/SIGINT. :class:`~tests.support.ses_process.SesServerProcess` does this
and reads the URL (it and :class:`~tests.support.ses_process.SesServerClient` live in
:mod:`tests.support.ses_process` and are re-exported here). The control API, under
``/_test/`` (JSON in and out; ``SesServerClient`` wraps it):

    GET  /_test/health                          {"ok": true}
    GET  /_test/config                          current switches
    POST /_test/config     {"latency": 0.02}    change switches; returns them
    POST /_test/reset      {"config": false}    forget messages, counters, suppressions,
                                                queued failures (and switches if true)
    POST /_test/fail-next  {"error": "AccountSuspendedException", "count": 1, "after": 0,
                            "operation": "SendEmail", "message": "...", "status": 400}
    GET  /_test/messages?since=N&raw=1&render=1 {"messages": [...], "next": M}
    GET  /_test/recipients                      {"addr": times accepted}
    GET  /_test/stats                           {"calls": {op: {outcome: n}}, ...}
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import random
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from tests.support.ses_content import bare_address
from tests.support.ses_model import InvalidRequest, SesApi, shared_api
from tests.support.ses_ops import Operations
from tests.support.ses_process import SesServerClient, SesServerProcess
from tests.support.ses_state import (
    SEND_OPERATIONS,
    ApiError,
    QueuedFailure,
    SentMessage,
    ServerConfig,
    ServerState,
)

_MAX_LINE = 65_537
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    411: "Length Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_REQUEST_IDS = itertools.count(1)
_PROCESS_TAG = uuid.uuid4().hex[:12]

__all__ = [
    "ApiError",
    "SentMessage",
    "ServerConfig",
    "SesServer",
    "SesServerClient",
    "SesServerProcess",
    "main",
]


class _HTTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: SesServer, api: SesApi) -> None:
        super().__init__(address, _Handler)
        self.owner = owner
        self.state = owner._state
        self.api = api
        self.ops = Operations(owner._state)
        self.open_lock = threading.Lock()
        self.open_connections: set[socket.socket] = set()

    def close_connections(self) -> None:
        """Drop every keep-alive connection (clients see a reset, as on a real restart)."""
        with self.open_lock:
            conns, self.open_connections = list(self.open_connections), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(socketserver.StreamRequestHandler):
    """A lean HTTP/1.1 keep-alive loop: http.server's header parsing (the email package)
    would cost more than everything the server does for a request."""

    disable_nagle_algorithm = True
    server: _HTTPServer
    close_connection = False

    def handle(self) -> None:
        server = self.server
        with server.open_lock:
            server.open_connections.add(self.connection)
        try:
            while self._one_request():
                pass
        except (ConnectionError, TimeoutError, OSError):
            return
        finally:
            with server.open_lock:
                server.open_connections.discard(self.connection)

    def _one_request(self) -> bool:
        rfile = self.rfile
        line = rfile.readline(_MAX_LINE)
        while line in (b"\r\n", b"\n"):
            line = rfile.readline(_MAX_LINE)
        if not line:
            return False
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self.close_connection = True
            self._reply(400, {"message": "malformed request line"})
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        while True:
            raw = rfile.readline(_MAX_LINE)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            self.close_connection = connection == "close"
        else:
            self.close_connection = connection != "keep-alive"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            self._reply(411, {"message": "chunked bodies are not supported; send Content-Length"})
            return False
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = int(headers.get("content-length") or 0)
        body = rfile.read(length) if length else b""
        try:
            self._dispatch(method, target, headers, body)
        except Exception as err:  # a bug in the server: answer, log, keep serving
            traceback.print_exc(file=sys.stderr)
            self._reply(500, {"message": f"test server bug: {err!r}"}, "InternalFailure")
        return not self.close_connection

    def _reply(self, status: int, payload: Any, error_code: str | None = None) -> None:
        body = b"{}" if payload is None else json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amzn-RequestId: {next(_REQUEST_IDS):016x}-{_PROCESS_TAG}\r\n"
        )
        if error_code:
            head += f"x-amzn-ErrorType: {error_code}\r\n"
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    def _dispatch(self, method: str, target: str, headers: dict[str, str], raw_body: bytes) -> None:
        path, _, query = target.partition("?")
        if path.startswith("/_test/"):
            self._control(method, path, query, raw_body)
            return
        server = self.server
        found = server.api.match(method, path)
        if found is None:
            self._reply(404, {"message": f"no SES v2 route {method} {path}"}, "UnknownOperation")
            return
        route, params = found
        try:
            body = json.loads(raw_body) if raw_body else {}
            query_args = server.api.check(route, body, params, query)
        except (ValueError, InvalidRequest) as err:
            with server.state.lock:
                server.state.calls[(route.operation, "BadRequestException")] += 1
            self._reply(400, {"message": str(err)}, "BadRequestException")
            return
        try:
            status, payload = server.ops.call(route, body, params, query_args, headers)
        except ApiError as err:
            self._reply(err.status, {"message": err.message}, err.code)
            return
        self._reply(status, payload)

    def _control(self, method: str, path: str, query: str, raw_body: bytes) -> None:
        state = self.server.state
        owner = self.server.owner
        try:
            data = json.loads(raw_body) if raw_body else {}
            args = {k: v[-1] for k, v in parse_qs(query).items()}
            if path == "/_test/health":
                self._reply(200, {"ok": True})
            elif path == "/_test/config" and method == "GET":
                self._reply(200, state.config.to_json())
            elif path == "/_test/config" and method == "POST":
                self._reply(200, owner.configure(**data).to_json())
            elif path == "/_test/reset" and method == "POST":
                owner.reset(config=bool(data.get("config", False)))
                self._reply(200, {"ok": True})
            elif path == "/_test/fail-next" and method == "POST":
                owner.fail_next(
                    data["error"],
                    count=int(data.get("count", 1)),
                    operation=data.get("operation"),
                    message=data.get("message"),
                    status=data.get("status"),
                    after=int(data.get("after", 0)),
                )
                self._reply(200, {"ok": True})
            elif path == "/_test/messages":
                since = int(args.get("since", "0"))
                msgs = owner.messages(since=since)
                self._reply(
                    200,
                    {
                        "messages": [
                            m.to_json(raw=args.get("raw") == "1", render=args.get("render") == "1")
                            for m in msgs
                        ],
                        "next": since + len(msgs),
                    },
                )
            elif path == "/_test/recipients":
                self._reply(200, owner.recipients())
            elif path == "/_test/stats":
                self._reply(200, owner.stats())
            else:
                self._reply(404, {"message": f"no control route {method} {path}"})
        except (ValueError, KeyError, TypeError) as err:
            self._reply(400, {"message": f"bad control request: {err}"})


class SesServer:
    """The server: ``with SesServer(**switches) as s: ... s.url``. See the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        **switches: Any,
    ) -> None:
        self._host = host
        self._port = port
        self._ssl = ssl_context  # serve HTTPS with it (a test's own CA and certificate)
        self._state = ServerState(ServerConfig(**switches))
        self._api: SesApi | None = None
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SesServer:
        if self._http is not None:
            return self
        self._api = shared_api()
        self._http = _HTTPServer((self._host, self._port), self, self._api)
        if self._ssl is not None:
            self._http.socket = self._ssl.wrap_socket(self._http.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is None:
            return
        self._http.shutdown()
        self._http.server_close()
        self._http.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http = None

    def __enter__(self) -> SesServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("SesServer is not running")
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    # -- switches ------------------------------------------------------------------------

    @property
    def config(self) -> ServerConfig:
        return self._state.config

    def configure(self, **switches: Any) -> ServerConfig:
        """Change switches while running (JSON-style values accepted)."""
        reject = switches.pop("reject", None) if "reject" in switches else ...
        values = ServerConfig.fields_from_json(switches)
        state = self._state
        with state.lock:
            new = dataclasses.replace(state.config, **values)
            if reject is not ...:
                new = dataclasses.replace(new, reject=reject)
            if "seed" in values:
                state.rng = random.Random(new.seed)
            if "max_send_rate" in values:
                state.tokens = min(state.tokens, new.max_send_rate)
            state.config = new
        return new

    def fail_next(
        self,
        error: str,
        *,
        count: int = 1,
        operation: str | None = None,
        message: str | None = None,
        status: int | None = None,
        after: int = 0,
    ) -> None:
        """The next ``count`` calls (of ``operation``, or any) answer with this error,
        once ``after`` more such calls have gone through normally."""
        err = ApiError(error, message or f"{error} (injected)", status)
        with self._state.lock:
            queue = self._state.fail_queue
            queue.append(QueuedFailure(operation, err, after))
            queue.extend(QueuedFailure(operation, err) for _ in range(count - 1))

    def reset(self, *, config: bool = False) -> None:
        state = self._state
        with state.lock:
            state.messages.clear()
            state.calls.clear()
            state.sent_times.clear()
            state.suppressed.clear()
            state.fail_queue.clear()
            if config:
                state.config = ServerConfig()
                state.rng = random.Random()

    # -- what happened -------------------------------------------------------------------

    def messages(self, *, since: int = 0) -> list[SentMessage]:
        with self._state.lock:
            return self._state.messages[since:]

    def recipients(self) -> dict[str, int]:
        """Accepted messages per recipient address (lower-case)."""
        counts: Counter[str] = Counter()
        for message in self.messages():
            counts.update(bare_address(a) for a in message.recipients)
        return dict(counts)

    def calls(self, operation: str | None = None) -> dict[str, int]:
        """Counts by outcome ("ok" or the error code) for one operation, or all summed."""
        with self._state.lock:
            items = list(self._state.calls.items())
        out: Counter[str] = Counter()
        for (op, outcome), n in items:
            if operation is None or op == operation:
                out[outcome] += n
        return dict(out)

    def stats(self) -> dict[str, Any]:
        with self._state.lock:
            items = list(self._state.calls.items())
            total = len(self._state.messages)
            suppressed = sum(1 for m in self._state.messages if m.suppressed)
        calls: dict[str, dict[str, int]] = {}
        for (op, outcome), n in items:
            calls.setdefault(op, {})[outcome] = n
        return {
            "calls": calls,
            "messages": total,
            "sends": sum(n for (op, _), n in items if op in SEND_OPERATIONS),
            "suppressed_recipients_sent": suppressed,
        }

    def suppress(self, address: str, reason: str = "BOUNCE") -> None:
        """Put an address on the account suppression list (as PutSuppressedDestination)."""
        with self._state.lock:
            self._state.suppressed[bare_address(address)] = (address, reason, time.time())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.ses_server",
        description="SES-v2-compatible test server with fault switches (see module docs).",
        epilog="example: python -m tests.support.ses_server --port 8025 --latency 0.02",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, help="seconds added to every call")
    parser.add_argument("--throttle", type=float, help="probability of a 429 per send call")
    parser.add_argument("--error-rate", type=float, help="probability of a 500 per send call")
    parser.add_argument("--max-send-rate", type=float, help="MaxSendRate for GetAccount")
    parser.add_argument("--max-24h", type=float, help="Max24HourSend for GetAccount")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--config", default="{}", help="JSON object of switches")
    args = parser.parse_args(argv)
    switches = ServerConfig.fields_from_json(json.loads(args.config))
    for name, value in (
        ("latency", args.latency),
        ("throttle_probability", args.throttle),
        ("error_probability", args.error_rate),
        ("max_send_rate", args.max_send_rate),
        ("max_24h", args.max_24h),
        ("seed", args.seed),
    ):
        if value is not None:
            switches[name] = value
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with SesServer(args.host, args.port, **switches) as server:
        print(f"ses_server listening on {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
