"""Waves from the API and the desk (issue 15), as `mailer send --at-local` has them: the
API's optional ``at_local`` on POST /api/v1/campaigns and the desk's "Local time" field, by
the CLI's one rule (mailer.sending.schedule.parse_at_local) and the same use case
(publish.create). SQLite and PostgreSQL."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from mailer.access import idempotency
from mailer.access.idempotency import Answer
from mailer.errors import InputError
from mailer.sending.models import Campaign
from mailer.sending.schedule import parse_at_local
from subscribers.models import Subscriber, utcnow
from tests.api_support import READERS, Api, all_json, campaign_count, error_of, running_api
from tests.conftest import Database
from tests.desk_support import Desk, campaigns_in, checked, confirm, hidden_fields, issue_text


def set_zones(db: Database, zones: dict[str, str]) -> None:
    with db.sessions.begin() as s:
        for email, zone in zones.items():
            s.execute(update(Subscriber).where(Subscriber.email == email).values(time_zone=zone))


def campaign(db: Database, campaign_id: int) -> Campaign:
    with db.sessions() as s:
        found = s.get(Campaign, campaign_id)
        assert found is not None
        s.expunge(found)
        return found


def clis_refusal(text: str) -> str:
    """What `mailer send --at-local TEXT` says (the one rule)."""
    with pytest.raises(InputError) as refused:
        parse_at_local(text)
    return str(refused.value)


# -- API ----------------------------------------------------------------------------------


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with running_api(db) as running:
        yield running


def test_api_at_local_makes_a_wave_campaign(api: Api) -> None:
    first, second = READERS[:2]
    set_zones(api.db, {first: "Asia/Shanghai", second: "America/New_York"})  # third: UTC
    key = api.post_issue()
    body = {"issue": key, "list": "brief", "at_local": "6:00", "expires_after": "6h"}
    with api.as_editor() as c:
        created = c.post("/api/v1/campaigns", json=body)
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        assert created.json()["recipients"] == len(READERS)
        shown = all_json(c.get(f"/api/v1/campaigns/{campaign_id}"))
    assert shown["at_local"] == "06:00"  # read as the CLI reads it
    assert shown["expires_at"] is None  # the 6h count from each wave, not from the start
    waves = shown["waves"]
    assert len(waves) == 3, waves  # Shanghai, New York and UTC mornings differ
    zones = [zone for wave in waves for zone in wave["zones"]]
    assert "Asia/Shanghai" in zones and "America/New_York" in zones
    assert sum(wave["counts"]["queued"] for wave in waves) == len(READERS)
    stored = campaign(api.db, campaign_id)
    assert stored.at_local == "06:00" and stored.wave_expiry == 6 * 3600


def test_api_at_local_refusals_name_the_field_with_the_clis_words(api: Api) -> None:
    key = api.post_issue()
    with api.as_editor() as c:
        for value in ("25:00", "06:60", "6am", "", "06:00:00", "x" * 64):
            body = {"issue": key, "list": "brief", "at_local": value}
            said = error_of(c.post("/api/v1/campaigns", json=body), 422)
            assert said == clis_refusal(value).replace("--at-local:", "at_local:"), said
            assert said.startswith("at_local: ")
        junks: tuple[object, ...] = (6, ["06:00"], "0" * 65)
        for junk in junks:  # not text, or longer than the field takes
            junk_body: dict[str, object] = {"issue": key, "list": "brief", "at_local": junk}
            r = c.post("/api/v1/campaigns", json=junk_body)
            assert "at_local" in error_of(r, 422)
        # refused before anything is counted, a dry run included
        dry = {"issue": key, "list": "brief", "at_local": "24:00", "dry_run": True}
        assert "at_local: " in error_of(c.post("/api/v1/campaigns", json=dry), 422)
    assert campaign_count(api.db) == 0


def test_api_at_local_is_part_of_the_idempotent_request(api: Api) -> None:
    key = api.post_issue()
    body = {"issue": key, "list": "brief", "at_local": "06:00"}
    with api.as_editor() as c:
        first = c.post("/api/v1/campaigns", json=body, headers={"Idempotency-Key": "w1"})
        assert first.status_code == 201, first.text
        again = c.post("/api/v1/campaigns", json=body, headers={"Idempotency-Key": "w1"})
        assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        other = {**body, "at_local": "07:00"}
        changed = c.post("/api/v1/campaigns", json=other, headers={"Idempotency-Key": "w1"})
        assert "another request" in error_of(changed, 422)
    assert campaign_count(api.db) == 1


def test_api_request_without_at_local_keeps_its_old_fingerprint(api: Api) -> None:
    """An answer kept before the field existed is still found by the same retry."""
    key = api.post_issue()
    before = {
        "issue": key,
        "list": "brief",
        "at": None,
        "expires_after": None,
        "test_to": None,
        "dry_run": False,
        "force": False,
    }
    old_print = idempotency.fingerprint("POST", "/api/v1/campaigns", before)
    kept = Answer(201, {"id": 4242, "status": "scheduled", "recipients": 3}, old_print)
    with api.db.sessions.begin() as s:
        idempotency.record_answer(s, "pipeline", "old-1", kept, now=utcnow())
    with api.as_editor() as c:
        retry = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief"},
            headers={"Idempotency-Key": "old-1"},
        )
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == 4242 and campaign_count(api.db) == 0


def test_openapi_has_the_optional_at_local(api: Api) -> None:
    with api.client() as c:
        doc = c.get("/api/v1/openapi.json").json()
    schema = doc["components"]["schemas"]["CampaignIn"]
    assert "at_local" in schema["properties"] and "at_local" not in schema.get("required", [])


# -- desk ---------------------------------------------------------------------------------


def test_desk_local_time_is_confirmed_and_sent(desk: Desk) -> None:
    set_zones(desk.db, {"reader1@example.com": "Asia/Shanghai"})
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    assert 'id="at_local" name="at_local"' in page
    assert (
        "Local time (each reader&#39;s zone)" in page or "Local time (each reader's zone)" in page
    )
    shown = confirm(c, path, page, at_local="6:00", expires_after="6h")
    assert shown.status_code == 200, shown.text
    text = html.unescape(shown.text)
    assert '<dd id="at-local">06:00 in each reader' in text
    assert "6h after each wave" in text
    fields = hidden_fields(shown.text, f"{path}/send")
    assert fields["at_local"] == "06:00" and fields["expires_at"] == ""
    assert float(fields["wave_expiry"]) == 6 * 3600
    # what was confirmed is what is sent: a changed local time or expiry breaks the token
    for name, value in (("at_local", "07:00"), ("wave_expiry", "60.0"), ("at_local", "")):
        forged = c.post(f"{path}/send", data={**fields, name: value})
        assert forged.status_code in (400, 403), (name, value, forged.status_code)
    assert campaigns_in(desk.db) == []
    sent = c.post(f"{path}/send", data=fields)
    assert sent.status_code == 303, sent.text
    [made] = campaigns_in(desk.db)
    assert made.at_local == "06:00" and made.wave_expiry == 6 * 3600
    assert made.expires_at is None and made.waves is not None and len(made.waves) == 2
    again = c.post(f"{path}/send", data=fields)  # the same confirmation: the same campaign
    assert again.status_code == 303 and len(campaigns_in(desk.db)) == 1


def test_desk_without_local_time_sends_at_once(desk: Desk) -> None:
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    shown = confirm(c, path, page, expires_after="6h")
    fields = hidden_fields(shown.text, f"{path}/send")
    assert fields["at_local"] == "" and fields["wave_expiry"] == ""
    assert 'id="at-local"' not in shown.text
    assert c.post(f"{path}/send", data=fields).status_code == 303
    [made] = campaigns_in(desk.db)
    assert made.at_local is None and made.expires_at is not None
    assert made.expires_at - made.created_at <= timedelta(hours=6, minutes=1)


def test_desk_local_time_follows_the_clis_rule(desk: Desk) -> None:
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    for value in ("25:00", "6am"):
        r = confirm(c, path, page, at_local=value)
        assert r.status_code == 422, r.text
        said = clis_refusal(value).replace("--at-local:", "local time:")
        assert said in html.unescape(r.text)
        assert 'id="send-error"' in r.text
        assert f'value="{value}"' in r.text  # the editor's text is kept to mend
    assert campaigns_in(desk.db) == []
