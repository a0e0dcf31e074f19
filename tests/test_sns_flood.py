"""Forged SNS messages naming slow certificate hosts do not stall the reader pages (issue 13,
item 6), and the certificate store's bounds hold: one fetch per URL, failures remembered,
a bounded number waiting, a bounded wait.

The flood test runs the app under ``mailer serve``'s own uvicorn configuration; the
certificate fetcher is the real HTTP one, pointed (the fetcher seam) at a local host that
answers each request only after 1.5 s."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509

from mailer.feedback.sns import SNSVerifier
from mailer.feedback.sns_certs import CertificateStore, CertificateUnavailable
from mailer.web.app import create_app
from tests.conftest import Database
from tests.plugins.sns_certs import CERT_URL, TOPIC_ARN, SNSSigner
from tests.support.web_edges import (
    SlowHost,
    ThreadServer,
    forged_notification,
    fresh_cert_url,
    p95,
    page_times,
    rewriting_fetcher,
)
from tests.web_support import make_list

FORGERIES = 60
#: Generous (a loaded 2-core machine runs this too): unloaded the page answers in a few ms;
#: before the certificate store, 60 forgeries held every request thread for ~30 s.
#: scripts/bench_web.py holds the figure to the goal of 200 ms.
PAGE_P95_LIMIT = 1.0


@pytest.fixture
def edge(db: Database) -> Iterator[tuple[ThreadServer, SlowHost, SNSVerifier]]:
    make_list(db.sessions, "brief")
    with SlowHost(delay=1.5) as slow:
        server = ThreadServer()
        settings = db.settings(base_url=server.url, sns_topic_arns=(TOPIC_ARN,))
        verifier = SNSVerifier(settings, fetch_cert=rewriting_fetcher(slow.url))
        server.start(create_app(settings, sns_verifier=verifier), settings)
        try:
            yield server, slow, verifier
        finally:
            server.stop()


def _post_all(base: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            return list(
                await asyncio.gather(*(client.post("/webhooks/ses", json=b) for b in bodies))
            )

    return asyncio.run(go())


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_forged_certificate_urls_do_not_stall_the_reader_pages(
    edge: tuple[ThreadServer, SlowHost, SNSVerifier], sns_signer: SNSSigner
) -> None:
    server, slow, verifier = edge
    page = f"{server.url}/subscribe/brief"
    unloaded = p95(page_times(page, 20, 0.02))
    forged = [forged_notification(sns_signer) for _ in range(FORGERIES)]
    answers: list[httpx.Response] = []
    flood = threading.Thread(target=lambda: answers.extend(_post_all(server.url, forged)))
    flood.start()
    deadline = time.monotonic() + 10
    while slow.active < verifier.certificates.workers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.active == verifier.certificates.workers, "the forgeries are being fetched"

    loaded = page_times(page, 60, 0.05)  # 3 s of pages while the forgeries are handled
    still_fetching = flood.is_alive()
    flood.join(timeout=60)

    assert p95(loaded) < PAGE_P95_LIMIT, f"p95 {p95(loaded):.3f}s under load, {unloaded:.3f}s not"
    assert still_fetching, "the pages were timed while the forged certificates were fetched"
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {403, 503} and sum(statuses.values()) == FORGERIES, statuses
    assert all(r.headers.get("retry-after") for r in answers if r.status_code == 503)
    # bounded: 4 fetches at a time, 16 URLs waiting at most; the rest refused at once
    assert slow.max_active <= verifier.certificates.workers
    assert slow.requests <= verifier.certificates.max_pending
    refused = [r for r in answers if "too many signing certificates" in r.text]
    assert len(refused) >= FORGERIES - verifier.certificates.max_pending

    # a URL that failed is remembered: sent again, it is refused without another fetch
    failed_url = next(
        f["SigningCertURL"]
        for f, r in zip(forged, answers, strict=True)
        if "could not fetch" in r.text
    )
    before = slow.requests
    again = _post_all(server.url, [forged_notification(sns_signer, failed_url)])
    assert again[0].status_code == 503 and "could not fetch" in again[0].text
    assert slow.requests == before


# -- the store on its own ------------------------------------------------------------------


class Gate:
    """A fetcher that blocks until opened, counting calls per URL."""

    def __init__(self, pem: bytes | None) -> None:
        self.pem = pem
        self.opened = threading.Event()
        self.calls: Counter[str] = Counter()

    def __call__(self, url: str) -> bytes:
        self.calls[url] += 1
        self.opened.wait(10)
        if self.pem is None:
            raise OSError("connection refused")
        return self.pem


def test_failures_are_remembered_for_the_ttl(sns_signer: SNSSigner) -> None:
    now = [100.0]
    gate = Gate(None)
    gate.opened.set()
    store = CertificateStore(gate, negative_ttl=60, monotonic=lambda: now[0])
    url = fresh_cert_url()
    for _ in range(3):
        with pytest.raises(CertificateUnavailable, match="connection refused"):
            store.get(url)
    assert gate.calls[url] == 1
    now[0] += 61
    with pytest.raises(CertificateUnavailable):
        store.get(url)
    assert gate.calls[url] == 2


def test_concurrent_waiters_share_one_fetch(sns_signer: SNSSigner) -> None:
    gate = Gate(sns_signer.cert_pem)
    store = CertificateStore(gate)

    async def scenario() -> list[x509.Certificate]:
        waiters = [asyncio.create_task(store.aget(CERT_URL)) for _ in range(20)]
        await asyncio.sleep(0.05)
        gate.opened.set()
        return list(await asyncio.gather(*waiters))

    certificates = asyncio.run(scenario())
    assert len({id(c) for c in certificates}) == 1
    assert gate.calls[CERT_URL] == 1 and store.fetches == 1
    assert store.has(CERT_URL)


def test_pending_fetches_are_bounded_and_waits_time_out(sns_signer: SNSSigner) -> None:
    gate = Gate(sns_signer.cert_pem)
    store = CertificateStore(gate, workers=1, max_pending=2, wait_timeout=0.2)
    first, second, third = (fresh_cert_url() for _ in range(3))

    async def scenario() -> None:
        waiting = [asyncio.create_task(store.aget(u)) for u in (first, second)]
        await asyncio.sleep(0)
        with pytest.raises(CertificateUnavailable, match="too many signing certificates"):
            await store.aget(third)
        for task in waiting:
            with pytest.raises(CertificateUnavailable, match=r"not fetched within 0\.2s"):
                await task

    asyncio.run(scenario())
    assert gate.calls[third] == 0
    gate.opened.set()  # the fetches that timed out for their callers still land in the cache
    deadline = time.monotonic() + 10
    while not (store.has(first) and store.has(second)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.has(first) and store.has(second)
    assert store.get(third) is not None
    store.close()
