"""What an outsider or a broken client does to /api/v1, over real HTTP on SQLite and
PostgreSQL: huge, nested and mistyped bodies, SQL-ish and unicode addresses, path tricks in
keys, other methods. Every answer is a clear 4xx as JSON (never a 5xx), and nothing is
stored that should not be."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest

from tests.api_support import ISSUE, READERS, Api, all_json, campaign_count, error_of, running_api
from tests.conftest import Database


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with running_api(db, max_body_bytes=64 * 1024) as running:
        yield running


def test_huge_bodies_are_refused_before_they_are_read(api: Api) -> None:
    big = (ISSUE + "\n" + "x" * 100 + "\n") * 1000  # ~250 KB, limit 64 KB
    with api.as_editor() as c:
        r = c.post("/api/v1/issues", content=big.encode(), headers={"Content-Type": "text/plain"})
        assert "larger than 65536 bytes" in error_of(r, 413)  # JSON, before a byte is read

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            for _ in range(100):
                yield b"x" * 4096

        r = c.post("/api/v1/issues", content=chunks(), headers={"Content-Type": "text/plain"})
        assert "larger than" in error_of(r, 413)
    with api.client() as c:  # a stranger's huge body is refused too
        r = c.post(
            "/api/v1/issues",
            content=big.encode(),
            headers={"Content-Type": "text/plain", "Accept": "text/html"},
        )
        error_of(r, 413)


def test_nested_and_malformed_json(api: Api) -> None:
    key = api.post_issue()
    with api.as_editor() as c:
        for raw in (
            b"[" * 20_000 + b"]" * 20_000,
            b'{"issue": ' + b"[" * 20_000 + b"]" * 20_000 + b', "list": "brief"}',
            b'{"issue": "' + key.encode() + b'", "list": "brief"',  # truncated
            b"\xff\xfe{}",
            b"null",
            b"[]",
            b'"a string"',
            b'{"issue": {"$ne": null}, "list": "brief"}',
            b'{"issue": "' + key.encode() + b'", "list": ["brief"]}',
            b'{"issue": "' + key.encode() + b'", "list": "brief", "test_to": [[["a@b.c"]]]}',
        ):
            r = c.post(
                "/api/v1/campaigns", content=raw, headers={"Content-Type": "application/json"}
            )
            assert r.status_code in (400, 422), (raw[:40], r.status_code, r.text[:200])
            all_json(r)
        # wrong content types for a JSON route
        body = f'{{"issue": "{key}", "list": "brief"}}'.encode()
        for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            r = c.post("/api/v1/campaigns", content=body, headers={"Content-Type": media})
            assert r.status_code in (400, 415, 422), (media, r.status_code, r.text)
        r = c.post("/api/v1/campaigns", data={"issue": key, "list": "brief"})
        assert r.status_code in (400, 415, 422)
    assert campaign_count(api.db) == 0


def test_sql_ish_and_unicode_addresses(api: Api) -> None:
    with api.as_ops() as c:
        for odd in (
            "' OR 1=1 --",
            "x@example.org' OR '1'='1",
            "%' --@example.org",
            "a\x00b@example.org",
            "ada@example.org\r\nBcc: evil@example.org",
            "a" * 400 + "@example.org",
        ):
            r = c.get(f"/api/v1/subscribers/{quote(odd, safe='@')}")
            assert r.status_code in (404, 422), (odd, r.status_code, r.text)
            all_json(r)
            r = c.post("/api/v1/lists/brief/subscribers", json={"email": odd})
            assert r.status_code == 422, (odd, r.status_code, r.text)
        # the wildcard of a LIKE is no wildcard here: no one is found by pattern
        assert c.get("/api/v1/subscribers/%25@example.org").status_code in (404, 422)
        assert all_json(c.get(f"/api/v1/subscribers/{READERS[0]}"))["email"] == READERS[0]

        for address in ("zoë@example.org", "δοκιμή@παράδειγμα.δοκιμή", "用户@例子.广告"):
            r = c.post("/api/v1/lists/brief/subscribers", json={"email": address})
            assert r.status_code in (201, 422), (address, r.status_code, r.text)
            if r.status_code == 201:
                stored = r.json()["email"]
                again = c.get(f"/api/v1/subscribers/{stored}")
                assert again.status_code == 200 and again.json()["email"] == stored


def test_path_tricks_in_keys_and_ids(api: Api) -> None:
    api.post_issue()
    with api.as_editor() as c:
        for path in (
            "/api/v1/issues/..%2F..%2F..%2Fetc%2Fpasswd",
            "/api/v1/issues/%2e%2e",
            "/api/v1/issues/" + "a" * 63 + "%00",
            "/api/v1/issues/" + "A" * 64,
            "/api/v1/issues/" + "a" * 65 + "/preview.html",
            "/api/v1/issues/' OR '1'='1",
            "/api/v1/campaigns/1 OR 1=1",
            "/api/v1/campaigns/-1",
            "/api/v1/campaigns/1.5",
            "/api/v1/campaigns/99999999999999999999999",
            "/api/v1/lists/..%2Fadmin/subscribers",
        ):
            r = (
                c.get(path)
                if "subscribers" not in path
                else c.post(path, json={"email": "a@b.org"})
            )
            assert r.status_code in (404, 405, 422), (path, r.status_code, r.text)
            all_json(r)


def test_other_methods_and_tokens_in_odd_places(api: Api) -> None:
    with api.as_editor() as c:
        for method, path in (
            ("PUT", "/api/v1/campaigns"),
            ("DELETE", "/api/v1/campaigns/1"),
            ("PATCH", "/api/v1/lists"),
            ("GET", "/api/v1/lists/brief/subscribers"),
        ):
            r = c.request(method, path)
            assert r.status_code == 405, (method, path, r.status_code)
            all_json(r)
    with api.client() as c:  # the token only counts in the Authorization header
        error_of(c.get("/api/v1/lists", params={"token": api.editor}), 401)
        error_of(c.get("/api/v1/lists", headers={"Cookie": f"token={api.editor}"}), 401)
        error_of(c.get("/api/v1/lists", headers={"X-Api-Key": api.editor}), 401)
        # an editor token presented with a claim to be ops is still an editor
        r = c.get(
            "/api/v1/stats", headers={"Authorization": f"Bearer {api.editor}", "X-Role": "ops"}
        )
        error_of(r, 403)


def test_a_client_that_hangs_up_mid_body_leaves_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    key = api.post_issue()
    body = json.dumps({"issue": key, "list": "brief"}).encode()
    parts = urlsplit(api.url)
    for path, media in (
        ("/api/v1/campaigns", "application/json"),
        ("/api/v1/issues", "text/plain"),
    ):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {api.editor}\r\nContent-Type: {media}\r\n"
            f"Content-Length: {len(body) + 100}\r\n\r\n"
        ).encode()
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(head + body[:20])
        time.sleep(0.3)
    with api.as_editor() as c:  # the server goes on as before
        assert c.get("/api/v1/lists").status_code == 200
    assert campaign_count(api.db) == 0
    failures = [r for r in caplog.records if r.name.startswith("mailer") and r.levelname == "ERROR"]
    assert failures == []


def test_test_sends_are_limited_per_token_not_a_relay(api: Api) -> None:
    """A test send goes to any address with any content: an editor's token (or a thief's)
    gets the desk's hourly allowance, shared with the desk, then 429 with Retry-After."""
    key = api.post_issue()
    body = {"issue": key, "list": "brief", "test_to": ["relay@example.org"]}
    with api.as_editor() as c:
        answers = [c.post("/api/v1/campaigns", json=body) for _ in range(13)]
    assert [r.status_code for r in answers[:12]] == [200] * 12, answers[-2].text
    refused = answers[12]
    assert "tests within the hour" in error_of(refused, 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert campaign_count(api.db) == 0
