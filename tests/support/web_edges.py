"""Helpers for attacking the web edges on loopback, shared by the tests and scripts/bench_web.py.

* :class:`SlowHost` is a certificate host that answers late (or never): what a forger's
  SigningCertURL would point the verifier at.
* :func:`rewriting_fetcher` is the certificate-fetcher seam: URLs of SNS's form are fetched,
  with the real HTTP fetcher, from the slow host instead of AWS.
* :func:`forged_notification` is a well-formed SNS envelope naming a certificate URL never
  seen before, so verifying it needs a fetch.
* :class:`ThreadServer` runs an app with ``mailer serve``'s own uvicorn configuration in a
  thread, on a socket bound first (so the base URL can name the port).
"""

from __future__ import annotations

import http.client
import http.server
import math
import select
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from mailer.config import Settings
from mailer.feedback.sns_certs import CertFetcher, httpx_fetch
from mailer.web.server import server_config
from tests.plugins.sns_certs import REGION, SNSSigner


class SlowHost:
    """HTTP on 127.0.0.1 answering 404 after ``delay`` seconds (``None``: never, until
    stopped). Counts requests and the most it held open at once."""

    def __init__(self, delay: float | None) -> None:
        self.delay = delay
        self.requests = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host._enter()
                try:
                    if host._hold(self.connection):
                        self.send_error(404)
                finally:
                    host._leave()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SlowHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _hold(self, connection: socket.socket) -> bool:
        """Wait out the delay; False if the client hung up first or the host is stopping
        (so ``active`` counts connections a client still waits on)."""
        deadline = None if self.delay is None else time.monotonic() + self.delay
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return True
            readable, _, _ = select.select([connection], [], [], 0.05)
            if readable and connection.recv(1, socket.MSG_PEEK) == b"":
                return False
        return False

    def _enter(self) -> None:
        with self._lock:
            self.requests += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1


def rewriting_fetcher(host_url: str) -> CertFetcher:
    """The real HTTP fetcher, pointed at ``host_url`` instead of sns.<region>.amazonaws.com."""

    def fetch(url: str) -> bytes:
        return httpx_fetch(host_url + urlsplit(url).path)

    return fetch


def fresh_cert_url() -> str:
    return f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-{uuid.uuid4().hex}.pem"


def forged_notification(signer: SNSSigner, cert_url: str | None = None) -> dict[str, Any]:
    """Well-formed, signed with a key SNS never had, naming an unknown certificate URL."""
    return signer.sign(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": signer.topic_arn,
            "Message": '{"eventType": "Bounce"}',
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "SigningCertURL": cert_url or fresh_cert_url(),
        }
    )


def page_times(url: str, count: int, interval: float) -> list[float]:
    """Latencies of ``count`` GETs of ``url`` started every ``interval`` seconds whether or
    not the earlier ones have answered (open loop: a stall shows in every request it
    delays, not only in the one that met it). Each worker thread keeps one connection."""
    parts = urlsplit(url)
    local = threading.local()

    def one(start: float) -> float:
        time.sleep(max(0.0, start - time.perf_counter()))
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.netloc, timeout=120)
        started = time.perf_counter()
        conn.request("GET", parts.path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status}")
        return time.perf_counter() - started

    t0 = time.perf_counter() + 0.05
    with ThreadPoolExecutor(max_workers=min(count, 64)) as pool:
        return list(pool.map(one, [t0 + i * interval for i in range(count)]))


def p95(samples: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class ThreadServer:
    """``app`` under ``mailer serve``'s uvicorn configuration, in a thread, on 127.0.0.1."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, app: Any, settings: Settings) -> None:
        config = server_config(
            app, settings, host="127.0.0.1", port=self.port, configure_logging=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)
        self.sock.close()
