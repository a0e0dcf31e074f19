"""An attacker's (or a fault's) pass over today's edges that found something: each test here
failed before its fix. Over real HTTP (uvicorn in a thread) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailer.access import tokens
from mailer.sending import publish
from tests.api_support import Api, campaign_count, error_of, running_api
from tests.conftest import Database
from tests.desk_support import Desk, campaigns_in, checked, issue_text, send_fields


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with running_api(db) as running:
        yield running


def test_a_token_revoked_while_its_request_renders_creates_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is checked when the request arrives; rendering the issue takes a while. A
    revocation in that window (a leaked token, revoked in a hurry) must stop the send."""
    key = api.post_issue()
    render = publish.render_for

    def revoked_meanwhile(*args: Any, **kwargs: Any) -> Any:
        rendered = render(*args, **kwargs)
        tokens.revoke_token(api.db.sessions, "pipeline")
        return rendered

    monkeypatch.setattr(publish, "render_for", revoked_meanwhile)
    with api.as_editor() as c:
        r = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief"},
            headers={"Idempotency-Key": "k-1"},
        )
        assert "revoked" in error_of(r, 401)
        assert campaign_count(api.db) == 0
        # and the next request with it is refused at the door, as before
        r = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief"})
        assert "revoked" in error_of(r, 401)
    assert campaign_count(api.db) == 0


@pytest.fixture
def desk(db: Database) -> Iterator[Desk]:
    running = Desk(db)
    try:
        yield running
    finally:
        running.close()


def test_a_desk_send_whose_token_is_revoked_while_it_renders_creates_nothing(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The desk's session is checked on arrival, like the API's token; the same window."""
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    render = publish.render_for

    def revoked_meanwhile(*args: Any, **kwargs: Any) -> Any:
        rendered = render(*args, **kwargs)
        tokens.revoke_token(desk.db.sessions, "ed")
        return rendered

    monkeypatch.setattr(publish, "render_for", revoked_meanwhile)
    r = c.post(f"{path}/send", data=fields)
    assert r.status_code == 401, r.text
    assert "nothing was done" in r.text
    assert campaigns_in(desk.db) == []
