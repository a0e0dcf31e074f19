"""Who is at fault, as the web answers it, on SQLite and PostgreSQL: the store's refusals of
bad input are 400, of a bad address 422, of the wrong state 409, of something missing 404.

The app is the real one (``create_app`` and its error handlers, httpx in-process); a small
router stands in for the coming API and desk, calling the store as they will: parse the
request, call one store function, format the answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter
from starlette.requests import Request

from mailer.web.state import web_state
from subscribers import store
from tests.conftest import Database
from tests.web_support import Web

router = APIRouter()


@router.post("/test-store/lists")
def create_list(request: Request, body: dict[str, str]) -> dict[str, int]:
    with web_state(request).sessions.begin() as s:
        mlist = store.create_list(
            s, body["slug"], name=body["name"], from_address=body["from_address"]
        )
        return {"id": mlist.id}


@router.post("/test-store/suppressions")
def suppress(request: Request, body: dict[str, str]) -> dict[str, str]:
    with web_state(request).sessions.begin() as s:
        return {"reason": store.suppress(s, body["email"], body["reason"]).reason}


@router.get("/test-store/lists/{slug}/export")
def export(request: Request, slug: str, status: str) -> list[list[str]]:
    with web_state(request).sessions() as s:
        return [list(row) for row in store.export_rows(s, store.get_list(s, slug), status)]


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db)  # lists "brief" and "other" exist
    w.app.include_router(router)
    yield w
    w.close()


JSON = {"accept": "application/json"}
GOOD_LIST = {"slug": "new", "name": "New Letter", "from_address": "New <news@example.org>"}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"slug": "Bad Slug"}, 400, "bad list slug"),
        ({"slug": "brief\r\nx"}, 400, "bad list slug"),
        ({"name": "   "}, 400, "non-empty --name"),
        ({"name": "Brief\r\nBcc: v@example.net"}, 400, "line break or control character"),
        ({"from_address": "Name <not an address>"}, 422, ""),
        ({"slug": "brief"}, 409, "already exists"),
        ({}, 200, ""),
    ],
    ids=["slug", "slug-crlf", "empty-name", "name-crlf", "from", "exists", "good"],
)
def test_creating_a_list(web: Web, body: dict[str, str], status: int, says: str) -> None:
    r = web.client.post("/test-store/lists", json={**GOOD_LIST, **body}, headers=JSON)
    assert r.status_code == status, r.text
    if status != 200:
        assert r.json()["status"] == status
        assert says in r.json()["error"]


def test_suppressing(web: Web) -> None:
    bad = web.client.post(
        "/test-store/suppressions",
        json={"email": "x@example.com", "reason": "because"},
        headers=JSON,
    )
    assert bad.status_code == 400
    assert "unknown suppression reason" in bad.json()["error"]
    good = web.client.post(
        "/test-store/suppressions",
        json={"email": "x@example.com", "reason": "manual"},
        headers=JSON,
    )
    assert good.status_code == 200 and good.json() == {"reason": "manual"}


def test_exporting(web: Web) -> None:
    bad = web.client.get("/test-store/lists/brief/export?status=bogus", headers=JSON)
    assert bad.status_code == 400
    assert "unknown status" in bad.json()["error"]
    missing = web.client.get("/test-store/lists/nope/export?status=active", headers=JSON)
    assert missing.status_code == 404
    assert "nope" not in missing.text  # no list names echoed on a 404
    good = web.client.get("/test-store/lists/brief/export?status=active", headers=JSON)
    assert good.status_code == 200 and good.json() == []
