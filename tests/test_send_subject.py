"""The editor's subject for one send over HTTP (issue 15), as `mailer send --subject` has it:
the API's optional ``subject`` on POST /api/v1/campaigns and the desk's Subject field, with
the CLI's rule (mailer.render.subject.clean_subject) and the list's subject template when it
is left out. SQLite and PostgreSQL."""

from __future__ import annotations

import html
from collections.abc import Iterator

import pytest

from mailer.sending.models import Campaign
from subscribers import store
from subscribers.list_settings import ListChanges, update_list
from tests.api_support import Api, all_json, campaign_count, error_of, running_api
from tests.conftest import Database
from tests.desk_support import Desk, campaigns_in, checked, confirm, hidden_fields, issue_text
from tests.web_support import wait_for_mail

MINE = "Harbour  reopens: the  editor's own subject"
TIDY = "Harbour reopens: the editor's own subject"


def set_template(db: Database, template: str) -> None:
    with db.sessions.begin() as s:
        update_list(s, store.get_list(s, "brief"), ListChanges(subject_template=template))


def subject_of(db: Database, campaign_id: int) -> str:
    with db.sessions() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign.subject


# -- API ----------------------------------------------------------------------------------


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with running_api(db) as running:
        yield running


def test_api_subject_is_the_sends_subject(api: Api) -> None:
    key = api.post_issue()
    set_template(api.db, "{newsletter}: {first_headline}")
    with api.as_editor() as c:
        plain = all_json(
            c.post("/api/v1/campaigns", json={"issue": key, "list": "brief", "dry_run": True})
        )
        assert plain["subject"].endswith(": Harbour reopens")  # the list's template
        dry = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief", "dry_run": True, "subject": MINE},
        )
        assert all_json(dry)["subject"] == TIDY
        test = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief", "test_to": ["ed@example.org"], "subject": MINE},
        )
        assert test.status_code == 200, test.text
        created = c.post("/api/v1/campaigns", json={"issue": key, "list": "brief", "subject": MINE})
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        shown = all_json(c.get(f"/api/v1/campaigns/{campaign_id}"))
    assert shown["subject"] == TIDY and subject_of(api.db, campaign_id) == TIDY
    [mail] = wait_for_mail(api.settings.outbox_dir / "0", 1)
    assert str(mail["Subject"]) == "[TEST] " + TIDY


def test_api_subject_follows_the_clis_rule(api: Api) -> None:
    key = api.post_issue()
    with api.as_editor() as c:
        for value, says in (
            ("Two\nlines", "subject: one line of text"),
            ("Bell\x07", "subject: one line of text"),
            ("Nul\x00", "subject: one line of text"),
            ("   ", "subject: empty"),
            ("x" * 251, "subject: 251 characters, more than 250"),
        ):
            body = {"issue": key, "list": "brief", "subject": value}
            assert says in error_of(c.post("/api/v1/campaigns", json=body), 422), repr(value)
        too_long = {"issue": key, "list": "brief", "subject": "y" * 1001}
        error_of(c.post("/api/v1/campaigns", json=too_long), 422)
        not_text = {"issue": key, "list": "brief", "subject": 5}
        error_of(c.post("/api/v1/campaigns", json=not_text), 422)
    assert campaign_count(api.db) == 0


def test_api_subject_is_part_of_the_idempotent_request(api: Api) -> None:
    key = api.post_issue()
    with api.as_editor() as c:
        first = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief", "subject": MINE},
            headers={"Idempotency-Key": "k1"},
        )
        assert first.status_code == 201, first.text
        again = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief", "subject": MINE},
            headers={"Idempotency-Key": "k1"},
        )
        assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
        other = c.post(
            "/api/v1/campaigns",
            json={"issue": key, "list": "brief", "subject": "Another"},
            headers={"Idempotency-Key": "k1"},
        )
        assert "another request" in error_of(other, 422)
    assert campaign_count(api.db) == 1


def test_openapi_has_the_optional_subject(api: Api) -> None:
    with api.client() as c:
        doc = c.get("/api/v1/openapi.json").json()
    schema = doc["components"]["schemas"]["CampaignIn"]
    assert "subject" in schema["properties"] and "subject" not in schema.get("required", [])


# -- desk ---------------------------------------------------------------------------------


def test_desk_subject_field_shows_the_lists_template_and_sets_the_subject(desk: Desk) -> None:
    set_template(desk.db, "{newsletter}: {first_headline}")
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    assert 'id="subject" name="subject"' in page
    assert 'placeholder="The Test Brief: Harbour reopens"' in page
    assert "<code>{newsletter}: {first_headline}</code>" in page
    shown = confirm(c, path, page, subject=MINE)
    assert shown.status_code == 200, shown.text
    assert f"<dt>Subject</dt><dd>{TIDY}</dd>" in html.unescape(shown.text)
    fields = hidden_fields(shown.text, f"{path}/send")
    assert fields["subject"] == TIDY
    # what was confirmed is what is sent: a changed subject breaks the form's token
    forged = c.post(f"{path}/send", data={**fields, "subject": "Something else"})
    assert forged.status_code in (400, 403) and campaigns_in(desk.db) == []
    sent = c.post(f"{path}/send", data=fields)
    assert sent.status_code == 303, sent.text
    [campaign] = campaigns_in(desk.db)
    assert campaign.subject == TIDY


def test_desk_subject_left_empty_is_the_lists_template(desk: Desk) -> None:
    set_template(desk.db, "{newsletter}: {first_headline}")
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    shown = confirm(c, path, page, subject="  ")
    fields = hidden_fields(shown.text, f"{path}/send")
    assert fields["subject"] == ""
    assert c.post(f"{path}/send", data=fields).status_code == 303
    [campaign] = campaigns_in(desk.db)
    assert campaign.subject == "The Test Brief: Harbour reopens"


def test_desk_subject_follows_the_clis_rule(desk: Desk) -> None:
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    for value, says in (
        ("Two\nlines", "subject: one line of text"),
        ("x" * 251, "subject: 251 characters, more than 250"),
    ):
        r = confirm(c, path, page, subject=value)
        assert r.status_code == 422, r.text
        assert says in html.unescape(r.text)
        assert 'id="send-error"' in r.text
    kept = confirm(c, path, page, subject="x" * 251)
    assert 'value="' + "x" * 251 + '"' in kept.text  # the editor's text is kept to mend
    assert campaigns_in(desk.db) == []
