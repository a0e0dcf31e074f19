"""/api/v1 over real HTTP (uvicorn), on SQLite and PostgreSQL: every route of the issue-14
contract with each role, and its errors. Campaigns are sent by a real `mailer worker`.
Attacks on the edges are in tests/test_api_attacks.py, Idempotency-Key in
tests/test_api_idempotency.py."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from mailer.access import tokens
from mailer.ops import stats
from mailer.sending.models import Delivery
from subscribers import store
from tests.api_support import (
    ADMIN_TOKEN,
    ISSUE,
    READERS,
    Api,
    all_json,
    campaign_count,
    error_of,
    running_api,
)
from tests.conftest import Database
from tests.web_support import confirmation_mails, make_list, wait_for_mail


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with running_api(db) as running:
        yield running


CONTRACT = {
    ("POST", "/api/v1/issues"),
    ("GET", "/api/v1/issues/{key}"),
    ("GET", "/api/v1/issues/{key}/preview.html"),
    ("GET", "/api/v1/issues/{key}/preview.txt"),
    ("GET", "/api/v1/issues/{key}/preview.eml"),
    ("POST", "/api/v1/campaigns"),
    ("GET", "/api/v1/campaigns"),
    ("GET", "/api/v1/campaigns/{campaign_id}"),
    ("POST", "/api/v1/campaigns/{campaign_id}/pause"),
    ("POST", "/api/v1/campaigns/{campaign_id}/resume"),
    ("POST", "/api/v1/campaigns/{campaign_id}/cancel"),
    ("POST", "/api/v1/campaigns/{campaign_id}/retry-failed"),
    ("GET", "/api/v1/lists"),
    ("POST", "/api/v1/lists/{slug}/subscribers"),
    ("GET", "/api/v1/subscribers/{email}"),
    ("DELETE", "/api/v1/subscribers/{email}"),
    ("GET", "/api/v1/stats"),
}
OPS_ONLY = {
    ("GET", "/api/v1/subscribers/{email}"),
    ("DELETE", "/api/v1/subscribers/{email}"),
    ("GET", "/api/v1/stats"),
}


def test_openapi_lists_the_contract_with_roles(api: Api) -> None:
    doc = all_json(api.client().get("/api/v1/openapi.json"))
    found = {
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if method in ("get", "post", "delete")
    }
    assert found == CONTRACT
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            want = "ops" if (method.upper(), path) in OPS_ONLY else "editor"
            assert op["x-role"] == want, (method, path)
            assert op["security"] == [{"token": []}]
            assert "401" in op["responses"] and "403" in op["responses"]
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"


def test_every_route_wants_a_token_and_the_right_role(api: Api) -> None:
    key = api.post_issue()
    fill = {"{key}": key, "{campaign_id}": "1", "{slug}": "brief", "{email}": READERS[0]}
    revoked = tokens.create_token(api.db.sessions, "gone", "ops")
    tokens.revoke_token(api.db.sessions, "gone")
    for method, template in sorted(CONTRACT):
        path = template
        for k, v in fill.items():
            path = path.replace(k, v)
        for header in (
            None,
            "Bearer",
            "Bearer null",
            f"Basic {api.editor}",
            f"Bearer {api.editor}x",
            f"Bearer {revoked}",
            f"Bearer {ADMIN_TOKEN[:-1]}",
        ):
            headers = {"Authorization": header} if header is not None else {}
            r = api.client().request(method, path, headers=headers, json={})
            error_of(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")
        if (method, template) in OPS_ONLY:
            r = api.as_editor().request(method, path)
            assert "needs an ops token; pipeline is editor" in error_of(r, 403)
        else:  # an editor gets past the door (the answer is the route's own)
            r = api.as_editor().request(method, path, json={})
            assert r.status_code not in (401, 403), (method, path, r.text)
        for token in (api.ops, ADMIN_TOKEN):  # ops may do everything
            r = api.client(token).request(method, path, json={})
            assert r.status_code not in (401, 403), (method, path, r.text)


def test_issue_handed_over_read_back_and_previewed(api: Api) -> None:
    with api.as_editor() as c:
        first = c.post(
            "/api/v1/issues", content=ISSUE.encode(), headers={"Content-Type": "text/plain"}
        )
        again = c.post(
            "/api/v1/issues",
            content=ISSUE.encode(),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        assert first.status_code == 201 and again.status_code == 200, (first.text, again.text)
        body = all_json(first)
        assert all_json(again) == body
        key = body["key"]
        assert len(key) == 64
        assert body["subject"] == "Harbour reopens; Rail link approved"
        assert body["items"] == 2
        assert any("postal address" in w for w in body["warnings"])
        base = f"{api.url}/api/v1/issues/{key}/preview"
        assert body["preview"] == {
            "html": base + ".html",
            "text": base + ".txt",
            "eml": base + ".eml",
        }
        assert all_json(c.get(f"/api/v1/issues/{key}")) == body

        html = c.get(f"/api/v1/issues/{key}/preview.html")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert (
            "Harbour reopens" in html.text
            and "script-src" not in html.headers["content-security-policy"]
        )
        text = c.get(f"/api/v1/issues/{key}/preview.txt")
        assert text.headers["content-type"].startswith("text/plain")
        assert "https://news.example.net/rail" in text.text
        eml = c.get(f"/api/v1/issues/{key}/preview.eml")
        assert eml.headers["content-type"] == "message/rfc822"
        msg = email.message_from_bytes(eml.content, policy=email.policy.default)
        assert msg["Subject"] == "Harbour reopens; Rail link approved"
    with api.as_ops() as c:  # ops may do what an editor may
        assert c.get(f"/api/v1/issues/{key}").status_code == 200


def test_issue_that_does_not_parse_names_its_line(api: Api) -> None:
    with api.as_editor() as c:
        bad = "Subject one; Subject two\nhttps://news.example.net/x\nmore\n"
        r = c.post("/api/v1/issues", content=bad.encode(), headers={"Content-Type": "text/plain"})
        assert "teaser" in error_of(r, 422) and r.json()["line"] == 2
        latin1 = ISSUE.replace("Monday", "Montag é").encode("latin-1")
        r = c.post("/api/v1/issues", content=latin1, headers={"Content-Type": "text/plain"})
        assert "UTF-8" in error_of(r, 422) and r.json()["line"] == 6
        r = c.post("/api/v1/issues", content=b"", headers={"Content-Type": "text/plain"})
        assert "empty" in error_of(r, 422)
        r = c.post("/api/v1/issues", json={"text": ISSUE})
        assert "text/plain or text/markdown" in error_of(r, 415)
        r = c.post("/api/v1/issues", content=ISSUE.encode())  # no Content-Type at all
        error_of(r, 415)
        missing = "0" * 64
        assert "no issue" in error_of(c.get(f"/api/v1/issues/{missing}"), 404)
        error_of(c.get(f"/api/v1/issues/{missing}/preview.html"), 404)
    with api.as_editor() as c:  # a Markdown issue sent as text/markdown names its list
        md = (
            "---\nsubject: Markdown day\nlist: brief\n---\n\nHello.\n\n"
            "## A story\nsource: Example Wire\n\nWhat happened, told in a sentence or two.\n\n"
            "https://news.example.net/md\n"
        )
        r = c.post("/api/v1/issues", content=md.encode(), headers={"Content-Type": "text/markdown"})
        assert r.status_code == 201, r.text
        assert r.json()["list"] == "brief" and r.json()["subject"] == "Markdown day"
        broken = md.replace("source: Example Wire\n", "")
        r = c.post(
            "/api/v1/issues", content=broken.encode(), headers={"Content-Type": "text/markdown"}
        )
        assert "source" in error_of(r, 422) and r.json()["line"] == 8
    assert campaign_count(api.db) == 0


def test_campaign_created_over_http_is_sent_by_the_worker(api: Api) -> None:
    key = api.post_issue()
    with api.as_editor() as c:
        r = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["status"] == "scheduled" and created["recipients"] == len(READERS)
        cid = created["id"]
        view = all_json(c.get(f"/api/v1/campaigns/{cid}"))
        assert view["counts"]["queued"] == len(READERS) and view["status"] == "scheduled"

        again = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief"})
        said = error_of(again, 409)
        assert f"campaign {cid}" in said and again.json()["campaign"] == cid
        assert '"force": true' in said and "--force" not in said  # in the API's terms

        ran = api.worker_once()
        assert ran.returncode == 0, ran.stdout + ran.stderr
        view = all_json(c.get(f"/api/v1/campaigns/{cid}"))
        assert view["status"] == "done"
        assert view["counts"] == {
            "queued": 0,
            "sending": 0,
            "sent": len(READERS),
            "failed": 0,
            "skipped": 0,
        }
        assert view["list"] == "brief" and view["issue"] == key
        assert set(view["stats"]) == {
            "delivered",
            "hard_bounced",
            "soft_bounced",
            "complained",
            "unsubscribed",
            "opened",
            "clicked",
        }
        assert view["finished_at"] is not None
        mails = wait_for_mail(api.settings.outbox_dir / str(cid), len(READERS))
        assert sorted(str(m["To"]) for m in mails) == sorted(READERS)

        listed = all_json(c.get("/api/v1/campaigns", params={"status": "done", "limit": 5}))
        assert [x["id"] for x in listed["campaigns"]] == [cid]
        assert all_json(c.get("/api/v1/campaigns", params={"status": "paused"})) == {
            "campaigns": []
        }
        error_of(c.get("/api/v1/campaigns", params={"status": "sent"}), 422)
        error_of(c.get("/api/v1/campaigns", params={"limit": 0}), 422)
        error_of(c.get("/api/v1/campaigns", params={"limit": 101}), 422)

        # the CLI shows the same view: one use case below both entrances
        shown = api.mailer("campaigns", "show", str(cid), "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == view

        forced = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief", "force": True})
        assert forced.status_code == 201 and forced.json()["id"] != cid


def test_schedule_pause_resume_cancel_retry(api: Api) -> None:
    key = api.post_issue()
    # a morning 200 days ahead in Shanghai (a start over 366 days away is refused as a typo)
    day = (datetime.now(UTC) + timedelta(days=200)).date()
    start = datetime(day.year, day.month, day.day, 6, tzinfo=timezone(timedelta(hours=8)))
    with api.as_editor() as c:
        r = c.post(
            "/api/v1/campaigns",
            json={
                "issue": key,
                "list": "brief",
                "at": start.isoformat(),
                "expires_after": "6h",
            },
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        view = all_json(c.get(f"/api/v1/campaigns/{cid}"))
        in_utc = start.astimezone(UTC)
        assert view["scheduled_at"].startswith(in_utc.strftime("%Y-%m-%dT%H:%M:%S"))
        assert view["expires_at"].startswith(
            (in_utc + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%S")
        )
        twice = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief", "force": True})
        said = error_of(twice, 409)  # scheduled, not started: force does not repeat it
        assert f"POST /api/v1/campaigns/{cid}/cancel" in said and "mailer " not in said
        ran = api.worker_once()  # not due: nothing is sent
        assert ran.returncode == 0, ran.stderr
        assert all_json(c.get(f"/api/v1/campaigns/{cid}"))["counts"]["queued"] == len(READERS)

        paused = c.post(f"/api/v1/campaigns/{cid}/pause", json={"reason": "wrong link"})
        assert all_json(paused) == {"id": cid, "status": "paused", "rows": 0}
        assert all_json(c.get(f"/api/v1/campaigns/{cid}"))["pause_reason"] == "wrong link"
        error_of(c.post(f"/api/v1/campaigns/{cid}/pause"), 409)  # paused already
        resumed = c.post(f"/api/v1/campaigns/{cid}/resume")  # before its time: it waits
        assert resumed.status_code == 200 and resumed.json()["status"] == "scheduled"
        error_of(c.post(f"/api/v1/campaigns/{cid}/resume"), 409)  # scheduled, not paused
        cancelled = all_json(c.post(f"/api/v1/campaigns/{cid}/cancel"))
        assert cancelled == {"id": cid, "status": "cancelled", "rows": len(READERS)}
        error_of(c.post(f"/api/v1/campaigns/{cid}/retry-failed"), 409)
        for action in ("pause", "resume", "cancel", "retry-failed"):
            assert "no campaign 999" in error_of(c.post(f"/api/v1/campaigns/999/{action}"), 404)
        error_of(c.get("/api/v1/campaigns/999"), 404)
        error_of(c.get("/api/v1/campaigns/0"), 422)
        error_of(c.get(f"/api/v1/campaigns/{2**63}"), 422)
        error_of(c.post(f"/api/v1/campaigns/{cid}/pause", json={"reason": "x" * 501}), 422)
        error_of(c.post(f"/api/v1/campaigns/{cid}/resume", json={"force": "maybe"}), 422)
        # a cancelled campaign releases its issue: it may be sent again
        again = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief"})
        assert again.status_code == 201, again.text


def test_retry_failed_queues_the_failed_rows_again(api: Api) -> None:
    key = api.post_issue()
    with api.as_editor() as c:
        cid = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief"}).json()["id"]
    assert api.worker_once().returncode == 0
    with api.db.sessions.begin() as s:  # one reader's send failed
        row = s.scalars(select(Delivery).where(Delivery.campaign_id == cid)).first()
        assert row is not None
        row.status, row.error = "failed", "refused by the test"
    with api.as_editor() as c:
        r = c.post(f"/api/v1/campaigns/{cid}/retry-failed")
        assert all_json(r) == {"id": cid, "status": "sending", "rows": 1}
        assert all_json(c.get(f"/api/v1/campaigns/{cid}"))["counts"]["queued"] == 1
    assert api.worker_once().returncode == 0
    with api.as_editor() as c:
        view = all_json(c.get(f"/api/v1/campaigns/{cid}"))
    assert view["status"] == "done" and view["counts"]["sent"] == len(READERS)


def test_dry_run_and_test_send_store_nothing(api: Api) -> None:
    key = api.post_issue()
    with api.as_editor() as c:
        dry = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief", "dry_run": True})
        body = all_json(dry)
        assert dry.status_code == 200 and body["dry_run"] is True
        assert body["recipients"] == len(READERS) and body["list"] == "brief"
        test = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief", "test_to": ["desk@example.org", "Ed@Example.org"]},
        )
        assert test.status_code == 200, test.text
        results = test.json()["test"]
        assert [t["to"] for t in results] == ["desk@example.org", "ed@example.org"]
        assert all(t["ok"] and t["message_id"] for t in results)
        both = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief", "dry_run": True, "test_to": ["a@example.org"]},
        )
        assert "exclude each other" in error_of(both, 422)
        bad = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief", "test_to": ["ok@example.org", "not-an-address"]},
        )
        error_of(bad, 422)
        many = c.post(
            "/api/v1/campaigns",
            json={
                "issue": key,
                "list": "brief",
                "test_to": [f"t{i}@example.org" for i in range(11)],
            },
        )
        error_of(many, 422)
    assert campaign_count(api.db) == 0
    with api.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0
    subjects = [str(m["Subject"]) for m in wait_for_mail(api.settings.outbox_dir / "0", 2)]
    assert subjects == ["[TEST] Harbour reopens; Rail link approved"] * 2


def test_campaign_request_errors(api: Api) -> None:
    key = api.post_issue()
    with api.as_editor() as c:
        assert "no list" in error_of(
            c.post("/api/v1/campaigns", json={"issue": key, "list": "nope"}), 404
        )
        assert "POST its text" in error_of(
            c.post("/api/v1/campaigns", json={"issue": "f" * 64, "list": "brief"}), 404
        )
        for body in (
            {"list": "brief"},
            {"issue": key},
            {"issue": key.upper(), "list": "brief"},
            {"issue": key, "list": "brief", "extra": 1},
            {"issue": key, "list": "brief", "dry_run": "yes"},
            {"issue": key, "list": "Brief"},
            {"issue": key, "list": "brief", "test_to": []},
        ):
            error_of(c.post("/api/v1/campaigns", json=body), 422)
        r = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief", "at": "tomorrowish"})
        assert "cannot read 'tomorrowish'" in error_of(r, 422)
        r = c.post(
            "/api/v1/campaigns", json={"issue": key, "list": "brief", "expires_after": "soon"}
        )
        error_of(r, 422)
        # spans no datetime holds, a campaign expired at its start, a start years away,
        # a start past the last datetime: each a 422 naming the field, never a 500
        for field, value, says in (
            ("expires_after", "99999999999d", "at most 366 days"),
            ("expires_after", "0s", "must be more than 0"),
            ("expires_after", "400d", "at most 366 days"),
            ("at", "+99999999999d", "at most 366 days"),
            ("at", "2199-01-01T00:00Z", "more than 366 days away"),
            ("at", "9999-12-31T23:59-08:00", "out of range"),
        ):
            body = {"issue": key, "list": "brief", field: value}
            assert says in error_of(c.post("/api/v1/campaigns", json=body), 422), (field, value)
    assert campaign_count(api.db) == 0


def test_lists_and_adding_subscribers(api: Api) -> None:
    make_list(api.db.sessions, "open", name="Open List", double_opt_in=False)
    with api.as_editor() as c:
        lists = all_json(c.get("/api/v1/lists"))["lists"]
        assert [(x["slug"], x["double_opt_in"], x["counts"]["active"]) for x in lists] == [
            ("brief", True, len(READERS)),
            ("open", False, 0),
        ]
        r = c.post("/api/v1/lists/brief/subscribers", json={"email": "New.Reader@Example.org"})
        assert all_json(r) == {
            "email": "new.reader@example.org",
            "list": "brief",
            "status": "pending",
            "created": True,
            "confirmation_mail": "queued",
        }
        assert r.status_code == 201
        wait_for_mail(api.settings.outbox_dir / "0", 1)
        (mail,) = confirmation_mails(api.settings)
        assert str(mail["To"]) == "new.reader@example.org"
        plain = mail.get_body(("plain",))
        assert plain is not None and "/confirm/" in plain.get_content()

        r = c.post(
            "/api/v1/lists/brief/subscribers",
            json={"email": "vouched@example.org", "name": "Vee", "confirmed": True},
        )
        assert r.json()["status"] == "active" and r.json()["confirmation_mail"] == "none"
        r = c.post("/api/v1/lists/open/subscribers", json={"email": "single@example.org"})
        assert r.json()["status"] == "active"
        r = c.post("/api/v1/lists/brief/subscribers", json={"email": READERS[0]})
        assert r.status_code == 201 and r.json()["created"] is False
        assert r.json()["status"] == "active"

        assert "no list" in error_of(
            c.post("/api/v1/lists/nope/subscribers", json={"email": "x@example.org"}), 404
        )
        error_of(c.post("/api/v1/lists/brief/subscribers", json={"email": "not an address"}), 422)
        error_of(c.post("/api/v1/lists/brief/subscribers", json={"email": ""}), 422)
        error_of(c.post("/api/v1/lists/brief/subscribers", json={"mail": "x@example.org"}), 422)
    with api.db.sessions.begin() as s:
        store.suppress(s, "blocked@example.org", "manual")
    with api.as_editor() as c:
        r = c.post("/api/v1/lists/brief/subscribers", json={"email": "blocked@example.org"})
        assert "suppressed" in error_of(r, 409)
    assert len(confirmation_mails(api.settings)) == 1


def test_subscribe_limits_hold_over_the_api(db: Database) -> None:
    """MAILER_SUBSCRIBE_IP_LIMIT (5 here) and the per-address limit (3 mails an hour)."""
    with running_api(db, subscribe_ip_limit=5) as api, api.as_editor() as c:
        answers = [
            c.post("/api/v1/lists/brief/subscribers", json={"email": "twice@example.org"})
            for _ in range(5)
        ]
        assert [a.status_code for a in answers] == [201] * 5
        assert [a.json()["confirmation_mail"] for a in answers] == ["queued"] * 3 + ["limited"] * 2
        r = c.post("/api/v1/lists/brief/subscribers", json={"email": "sixth@example.org"})
        assert "too many" in error_of(r, 429)
        assert int(r.headers["retry-after"]) > 0
        wait_for_mail(api.settings.outbox_dir / "0", 3)
        assert len(confirmation_mails(api.settings)) == 3


def test_access_erase_and_stats_for_ops(api: Api) -> None:
    with api.as_ops() as c:
        person = all_json(c.get(f"/api/v1/subscribers/{READERS[0]}"))
        assert person["email"] == READERS[0]
        assert [s["list"] for s in person["subscriptions"]] == ["brief"]
        assert c.get(f"/api/v1/subscribers/{READERS[0].upper()}").status_code == 200
        error_of(c.get("/api/v1/subscribers/nobody@example.org"), 404)
        error_of(c.get("/api/v1/subscribers/not-an-address"), 422)

        gone = c.delete(f"/api/v1/subscribers/{READERS[0]}")
        assert all_json(gone) == {"email": READERS[0], "erased": True}
        error_of(c.get(f"/api/v1/subscribers/{READERS[0]}"), 404)
        again = c.delete("/api/v1/subscribers/nobody@example.org")
        assert "nothing is held" in error_of(again, 404)

        figures = all_json(c.get("/api/v1/stats", params={"days": 7}))
        with api.db.sessions() as s:
            expected = stats.collect(s, days=7).to_json()
        assert set(figures) == set(expected)
        assert figures["days"] == 7 and figures["totals"] == expected["totals"]
        error_of(c.get("/api/v1/stats", params={"days": 0}), 422)
        error_of(c.get("/api/v1/stats", params={"days": 10**9}), 422)
        error_of(c.get("/api/v1/stats", params={"campaign": 999}), 404)
        error_of(c.get("/api/v1/stats", params={"list": "nope"}), 404)
    with api.client(ADMIN_TOKEN) as c:  # MAILER_ADMIN_TOKEN is an ops token
        assert c.get("/api/v1/stats").status_code == 200
        assert c.get(f"/api/v1/subscribers/{READERS[1]}").status_code == 200


def test_docs_page_is_served_without_a_cdn(api: Api) -> None:
    with api.client() as c:
        page = c.get("/api/v1/docs")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "http" not in csp
        assert (
            'src="docs/swagger-ui-bundle.js"' in page.text
            and "//" not in page.text.split("<body>")[1]
        )
        js = c.get("/api/v1/docs/swagger-ui-bundle.js")
        assert js.status_code == 200 and "SwaggerUIBundle" in js.text
        assert c.get("/api/v1/docs/swagger-ui.css").status_code == 200
        assert 'url: "openapi.json"' in c.get("/api/v1/docs/init.js").text
        for bad in ("index.html", "..%2F..%2Fpyproject.toml", "oauth2-redirect.html"):
            assert c.get(f"/api/v1/docs/{bad}").status_code == 404
        # everything under /api/ answers JSON, whatever the client accepts
        r = c.get("/api/v1/nothing-here", headers={"Accept": "text/html"})
        error_of(r, 404)


def test_the_pipeline_beside_a_running_worker(api: Api) -> None:
    """What the upstream pipeline does, with `mailer worker` running beside the server as
    the README says: hand over, dry run, send with a key, follow until done."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailer", "worker", "--poll", "0.2"],
        env=api.db.env(),
        cwd=api.db.tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        key = api.post_issue()
        with api.as_editor() as c:
            dry = all_json(
                c.post("/api/v1/campaigns", json={"issue": key, "list": "brief", "dry_run": True})
            )
            assert dry["recipients"] == len(READERS)
            sent = c.post(
                "/api/v1/campaigns",
                json={"issue": key, "list": "brief", "expires_after": "6h"},
                headers={"Idempotency-Key": "pipeline-2025-03-03"},
            )
            assert sent.status_code == 201, sent.text
            cid = sent.json()["id"]
            seen = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                view = all_json(c.get(f"/api/v1/campaigns/{cid}"))
                seen.append(view["status"])
                if view["status"] == "done":
                    break
                time.sleep(0.2)
            assert seen[-1] == "done", seen
            assert view["counts"]["sent"] == len(READERS) and view["counts"]["queued"] == 0
            # the pipeline's retry after the fact still gets the first answer
            again = c.post(
                "/api/v1/campaigns",
                json={"issue": key, "list": "brief", "expires_after": "6h"},
                headers={"Idempotency-Key": "pipeline-2025-03-03"},
            )
            assert again.json() == sent.json()
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, out
    assert f"campaign {cid}: done, sent {len(READERS)}" in out
    assert campaign_count(api.db) == 1
