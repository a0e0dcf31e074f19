"""SNS signing certificates: cached, fetched off the request path, never a way to stall us.

Any well-formed message can name a certificate URL of SNS's shape, and its signature can
only be checked once that certificate is loaded. So a stream of forged messages, each
naming a new URL on a slow or silent host, must cost a bounded amount and nothing else:

- good certificates are cached by URL (LRU, :data:`CACHE_LIMIT`); failures are cached too,
  for ``negative_ttl`` seconds, so one bad URL is fetched at most once per TTL;
- one fetch per URL at a time (single-flight): concurrent messages share it;
- fetches run on a small pool of their own (``workers`` threads, never the web server's
  request threads), at most ``max_pending`` distinct URLs wait for it, and a further new
  URL is refused at once;
- a caller waits at most ``wait_timeout`` seconds; the default fetcher gives up after
  :data:`FETCH_TIMEOUT` seconds in all and reads at most :data:`MAX_CERT_BYTES`.

A certificate that cannot be had raises :class:`CertificateUnavailable`, a
VerificationError that may pass on a retry (the webhook answers 503, so SNS retries).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from mailer.errors import VerificationError

__all__ = [
    "CACHE_LIMIT",
    "FETCH_TIMEOUT",
    "MAX_CERT_BYTES",
    "CertFetcher",
    "CertificateStore",
    "CertificateUnavailable",
    "httpx_fetch",
]

CertFetcher = Callable[[str], bytes]
"""Given a (validated) certificate URL, return the PEM bytes or raise."""

CACHE_LIMIT = 64
NEGATIVE_LIMIT = 4096
FETCH_TIMEOUT = 5.0
MAX_CERT_BYTES = 64 * 1024


class CertificateUnavailable(VerificationError):
    """The signing certificate could not be had now (fetch failed, timed out, or too many
    fetches in flight); a retry later may succeed."""


def httpx_fetch(url: str) -> bytes:
    """GET ``url``: no redirects, :data:`FETCH_TIMEOUT` seconds in all, at most 64 KiB."""
    # Imported here: httpx costs ~100 ms to import (-X importtime), which `feedback poll`
    # and a webhook served from the cache or the cert dir never need.
    import httpx

    deadline = time.monotonic() + FETCH_TIMEOUT
    chunks: list[bytes] = []
    size = 0
    with httpx.stream("GET", url, timeout=FETCH_TIMEOUT, follow_redirects=False) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_CERT_BYTES:
                raise ValueError(f"larger than {MAX_CERT_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError(f"took longer than {FETCH_TIMEOUT:g}s")
            chunks.append(chunk)
    return b"".join(chunks)


class CertificateStore:
    """Certificates by URL: memory, then ``cert_dir``, then one bounded, shared fetch."""

    def __init__(
        self,
        fetch: CertFetcher | None = None,
        *,
        cert_dir: Path | None = None,
        workers: int = 4,
        max_pending: int = 16,
        wait_timeout: float = FETCH_TIMEOUT + 1.0,
        negative_ttl: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch: CertFetcher = fetch or httpx_fetch
        self.cert_dir = cert_dir
        self.workers = workers
        self.max_pending = max_pending
        self.wait_timeout = wait_timeout
        self.negative_ttl = negative_ttl
        self.monotonic = monotonic
        self.fetches = 0  # how many times the fetcher was called (ops, tests, benchmarks)
        self._good: OrderedDict[str, x509.Certificate] = OrderedDict()
        # url -> (until, error class, message): no exception kept (its traceback holds frames)
        self._bad: OrderedDict[str, tuple[float, type[VerificationError], str]] = OrderedDict()
        self._pending: dict[str, Future[x509.Certificate]] = {}
        self._lock = threading.Lock()  # guards the dicts only, never held during I/O
        self._pool: ThreadPoolExecutor | None = None

    # -- the two ways to ask -----------------------------------------------------------------

    def get(self, url: str) -> x509.Certificate:
        """Blocking: for callers on their own thread (SQS poller, CLI, tests)."""
        ready = self.cached(url)
        if ready is not None:
            return ready
        future = self._start(url)
        try:
            return future.result(timeout=self.wait_timeout)
        except FutureTimeout as err:
            raise self._timed_out(url) from err

    async def aget(self, url: str) -> x509.Certificate:
        """Awaitable: waits on the event loop without holding any thread."""
        ready = self.cached(url)
        if ready is not None:
            return ready
        waiter = asyncio.wrap_future(self._start(url))
        # A waiter that timed out is left to finish: cancelling it would cancel the shared
        # fetch for every other waiter. Its outcome is read so asyncio does not warn.
        waiter.add_done_callback(_consume)
        done, _ = await asyncio.wait({waiter}, timeout=self.wait_timeout)
        if not done:
            raise self._timed_out(url)
        return waiter.result()

    def cached(self, url: str) -> x509.Certificate | None:
        """The certificate if no fetch is needed; CertificateUnavailable if it recently
        failed; None if it must be fetched."""
        with self._lock:
            certificate = self._good.get(url)
            if certificate is not None:
                self._good.move_to_end(url)
                return certificate
            failure = self._bad.get(url)
            if failure is not None:
                until, kind, message = failure
                if self.monotonic() < until:
                    raise kind(message)  # the same answer as the first time
                del self._bad[url]
        pem = self._pem_from_dir(url)
        if pem is None:
            return None
        certificate = _parse(url, pem)
        self._remember(url, certificate)
        return certificate

    def has(self, url: object) -> bool:
        """True when a message signed under ``url`` can be checked without any I/O."""
        return isinstance(url, str) and url in self._good

    def clear(self) -> None:
        """Forget every cached certificate and failure (tests, benchmarks, rotation)."""
        with self._lock:
            self._good.clear()
            self._bad.clear()

    def close(self) -> None:
        """Stop the fetch pool (a running fetch finishes on its own timeout)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- fetching ----------------------------------------------------------------------------

    def _start(self, url: str) -> Future[x509.Certificate]:
        """The fetch of ``url`` in flight (joined, or started now), or refusal when full."""
        with self._lock:
            pending = self._pending.get(url)
            if pending is not None:
                return pending
            certificate = self._good.get(url)
            if certificate is not None:  # landed since cached() looked
                done: Future[x509.Certificate] = Future()
                done.set_result(certificate)
                return done
            if len(self._pending) >= self.max_pending:
                raise CertificateUnavailable(
                    f"too many signing certificates being fetched ({self.max_pending}); "
                    f"not fetching {url} now"
                )
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sns-cert")
            future = self._pool.submit(self._fetch, url)
            self._pending[url] = future
            return future

    def _fetch(self, url: str) -> x509.Certificate:
        """On the pool: fetch and parse; the outcome is cached before the future settles."""
        with self._lock:
            self.fetches += 1
        try:
            try:
                pem = self.fetch(url)
            except Exception as err:  # any fetch failure is a verification failure
                raise CertificateUnavailable(
                    f"could not fetch signing certificate {url}: {err}"
                ) from err
            certificate = _parse(url, pem)
        except VerificationError as err:
            with self._lock:
                self._bad[url] = (self.monotonic() + self.negative_ttl, type(err), str(err))
                while len(self._bad) > NEGATIVE_LIMIT:
                    self._bad.popitem(last=False)
                self._settled(url)
            raise
        self._remember(url, certificate)
        with self._lock:
            self._settled(url)
        return certificate

    def _settled(self, url: str) -> None:
        """Under the lock: ``url`` is no longer in flight; an idle pool is let go (threads
        are cheap next to a fetch, and verifiers made per test or per poll leave none)."""
        self._pending.pop(url, None)
        if not self._pending and self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _timed_out(self, url: str) -> CertificateUnavailable:
        return CertificateUnavailable(
            f"signing certificate {url} not fetched within {self.wait_timeout:g}s"
        )

    def _remember(self, url: str, certificate: x509.Certificate) -> None:
        with self._lock:
            self._good[url] = certificate
            self._good.move_to_end(url)
            while len(self._good) > CACHE_LIMIT:
                self._good.popitem(last=False)

    def _pem_from_dir(self, url: str) -> bytes | None:
        if self.cert_dir is None:
            return None
        path = self.cert_dir / urlsplit(url).path.rsplit("/", 1)[-1]
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise VerificationError(f"cannot read pre-seeded certificate {path}: {err}") from err


def _parse(url: str, pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise VerificationError(f"signing certificate {url} is not a PEM certificate") from err


def _consume(future: asyncio.Future[x509.Certificate]) -> None:
    if not future.cancelled():
        future.exception()
