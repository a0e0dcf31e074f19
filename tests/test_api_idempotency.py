"""Idempotency-Key on POST /api/v1/campaigns over real HTTP, on SQLite and PostgreSQL: a
retry gets the first answer, also after the client dropped the connection before reading
it, and retries racing each other make one campaign (the database decides)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from mailer.access.models import IdempotentAnswer
from tests.api_support import Api, all_json, campaign_count, error_of, issue_text, running_api
from tests.conftest import Database


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with running_api(db) as running:
        yield running


def _post(c: httpx.Client, body: dict[str, object], key: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return c.post("/api/v1/campaigns", json=body, headers=headers)


def test_a_retry_gets_the_first_answer(api: Api) -> None:
    key = api.post_issue()
    body = {"issue": key, "list": "brief"}
    with api.as_editor() as c:
        first = _post(c, body, "send-2025-03-03")
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        for _ in range(3):
            again = _post(c, body, "send-2025-03-03")
            assert again.status_code == 201 and again.json() == first.json()
            assert again.headers["idempotent-replayed"] == "true"
        # the same key with another request is refused, and changes nothing
        other = _post(c, {**body, "force": True}, "send-2025-03-03")
        assert "another request" in error_of(other, 422)
        # no key: the ordinary answer to a second send (409 naming the campaign)
        plain = _post(c, body, None)
        assert error_of(plain, 409) and plain.json()["campaign"] == first.json()["id"]
    # keys belong to their token: the ops token's same key is a request of its own
    with api.as_ops() as c:
        theirs = _post(c, {**body, "force": True}, "send-2025-03-03")
        assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert campaign_count(api.db) == 2


def test_keys_are_checked(api: Api) -> None:
    key = api.post_issue()
    body = {"issue": key, "list": "brief"}
    with api.as_editor() as c:
        for bad in ("with space", "x" * 256, "tab\there", "ümlaut"):
            r = c.post(
                "/api/v1/campaigns",
                content=json.dumps(body).encode(),
                headers={
                    "Idempotency-Key": bad.encode("utf-8"),
                    "Content-Type": "application/json",
                },
            )
            error_of(r, 422)
        # SQL-ish and path-ish keys are just keys
        for odd in ("';DROP/**/TABLE/**/campaigns;--", "../../etc/passwd", "%00%27"):
            r = _post(c, {**body, "force": True}, odd)
            assert r.status_code == 201, r.text
            assert _post(c, {**body, "force": True}, odd).json() == r.json()
    assert campaign_count(api.db) == 3
    with api.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(IdempotentAnswer)) == 3


def _raw_post_and_hang_up(api: Api, body: dict[str, object], key: str) -> None:
    """Send the whole request, then close the socket before any of the answer is read."""
    parts = urlsplit(api.url)
    data = json.dumps(body).encode()
    head = (
        f"POST /api/v1/campaigns HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {api.editor}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head + data)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    # SO_LINGER 0: the close is a reset, as when a client dies


def test_retry_after_a_dropped_connection_makes_one_campaign(api: Api) -> None:
    key = api.post_issue()
    body = {"issue": key, "list": "brief"}
    _raw_post_and_hang_up(api, body, "dropped-1")
    with api.as_editor() as c:
        deadline = time.monotonic() + 20
        while True:  # the retry, as a client does it (the first may still be running)
            retry = _post(c, body, "dropped-1")
            if retry.status_code == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert retry.status_code == 201, retry.text
        view = all_json(c.get(f"/api/v1/campaigns/{retry.json()['id']}"))
        assert view["counts"]["queued"] == 3
    assert campaign_count(api.db) == 1


def _race(api: Api, body: dict[str, object], key: str, n: int = 6) -> list[httpx.Response]:
    """``n`` clients send the same request with the same key at the same moment."""
    answers: list[httpx.Response] = []
    start = threading.Barrier(n)

    def send() -> None:
        with api.as_editor() as c:
            start.wait()
            answers.append(_post(c, body, key))

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


def test_racing_retries_make_one_campaign(api: Api) -> None:
    keys = [api.post_issue(issue_text(n)) for n in range(2)]
    for issue_key, force in ((keys[0], False), (keys[1], True)):
        body = {"issue": issue_key, "list": "brief", "force": force}
        answers = _race(api, body, f"race-{issue_key[:8]}")
        assert len(answers) == 6
        assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
    assert campaign_count(api.db) == 2
