"""An attacker's (or a fault's) pass over today's edges that found something: each test here
failed before its fix. Over real HTTP (uvicorn in a thread) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailer.access import idempotency, tokens
from mailer.errors import InputError, InvalidAddressError
from mailer.sending import publish
from subscribers import list_settings, store
from subscribers.list_settings import ListChanges
from subscribers.models import Subscriber
from tests.api_support import Api, campaign_count, error_of, running_api
from tests.conftest import Database
from tests.desk_support import (
    Desk,
    campaigns_in,
    checked,
    hidden_fields,
    issue_text,
    send_fields,
    sign_in,
)
from tests.web_support import make_list


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with running_api(db) as running:
        yield running


RevokeWhileRendering = Callable[[sessionmaker[Session], str], None]


@pytest.fixture
def revoke_while_rendering(monkeypatch: pytest.MonkeyPatch) -> RevokeWhileRendering:
    """``arm(sessions, name)``: from now on, each issue rendered revokes the token ``name``
    just after rendering; the window between the check at the door and the write."""

    def arm(sessions: sessionmaker[Session], name: str) -> None:
        render = publish.render_for

        def revoked_meanwhile(*args: Any, **kwargs: Any) -> Any:
            rendered = render(*args, **kwargs)
            tokens.revoke_token(sessions, name)
            return rendered

        monkeypatch.setattr(publish, "render_for", revoked_meanwhile)

    return arm


def test_a_token_revoked_while_its_request_renders_creates_nothing(
    api: Api, revoke_while_rendering: RevokeWhileRendering
) -> None:
    """The token is checked when the request arrives; rendering the issue takes a while. A
    revocation in that window (a leaked token, revoked in a hurry) must stop the send."""
    key = api.post_issue()
    revoke_while_rendering(api.db.sessions, "pipeline")
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


def test_a_desk_send_whose_token_is_revoked_while_it_renders_creates_nothing(
    desk: Desk, revoke_while_rendering: RevokeWhileRendering
) -> None:
    """The desk's session is checked on arrival, like the API's token; the same window."""
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    revoke_while_rendering(desk.db.sessions, "ed")
    r = c.post(f"{path}/send", data=fields)
    assert r.status_code == 401, r.text
    assert "nothing was done" in r.text
    assert campaigns_in(desk.db) == []


#: what str.splitlines (and so Python's email headers and parseaddr) takes for a line break
#: beyond CR and LF: the Unicode line and paragraph separators
LINE_SEPARATORS = ("\u2028", "\u2029")


@pytest.mark.parametrize("sep", LINE_SEPARATORS)
def test_unicode_line_separators_are_refused_in_every_list_text_bound_for_a_header(
    db: Database, sep: str
) -> None:
    """A list's name (the From name, List-Id and the system mails' subjects), From, greeting
    and subject template: U+2028 passed the control check. In the From, parseaddr then kept
    only what followed it (a different sender, silently); in the name, every welcome mail
    failed to build (the email package refuses a header it would split)."""
    make_list(db.sessions, "brief")
    hostile = {
        "name": f"The Brief{sep}Bcc: evil@example.net",
        "from_address": f"The Brief{sep}Bcc: evil@example.net <news@example.org>",
        "greeting": f"Dear reader,{sep}Bcc: evil@example.net",
        "subject_template": f"{{subject}}{sep}Bcc: evil@example.net",
    }
    for field, value in hostile.items():
        with db.sessions.begin() as s:
            mlist = store.get_list(s, "brief")
            with pytest.raises(InputError) as err:
                list_settings.update_list(s, mlist, ListChanges(**{field: value}))
            named = {"from_address": "from", "subject_template": "subject-template"}
            assert named.get(field, field).split("_")[0] in str(err.value).lower(), err.value
    with db.sessions() as s:
        kept = store.get_list(s, "brief")
        assert kept.name == "The Test Brief" and kept.from_address.endswith("<news@example.org>")
        assert kept.greeting is None and kept.subject_template is None
    with db.sessions.begin() as s, pytest.raises(InputError):
        store.create_list(
            s, "other", name=f"Other{sep}Letter", from_address="Other <other@example.org>"
        )


@pytest.mark.parametrize(
    "value",
    [
        "reader@example.net <news@example.org>",  # an address as the name: parseaddr took it
        "news@example.org, evil@example.net",
        "News <news@example.org>, Evil <evil@example.net>",
        "News <news@example.org> trailing words",
    ],
)
def test_a_from_that_is_not_exactly_one_address_is_refused_not_cut(value: str) -> None:
    with pytest.raises(InvalidAddressError) as err:
        store.parse_from(value)
    assert repr(value) in str(err.value)


def _mails_out(settings: Any) -> int:
    return len(list(settings.outbox_dir.rglob("*.eml")))


def test_a_test_send_whose_token_is_revoked_while_it_renders_mails_nobody(
    api: Api, revoke_while_rendering: RevokeWhileRendering
) -> None:
    """A test send goes to any address: a stolen token revoked meanwhile must not relay."""
    key = api.post_issue()
    body = {"issue": key, "list": "brief", "test_to": ["relay@example.org"]}
    with api.as_editor() as c:
        assert c.post("/api/v1/campaigns", json=body).status_code == 200
        before = _mails_out(api.settings)
        assert before > 0  # a test send does reach the outbox
        revoke_while_rendering(api.db.sessions, "pipeline")
        assert "revoked" in error_of(c.post("/api/v1/campaigns", json=body), 401)
    assert _mails_out(api.settings) == before


def test_a_desk_test_send_whose_token_is_revoked_while_it_renders_mails_nobody(
    desk: Desk, revoke_while_rendering: RevokeWhileRendering
) -> None:
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    fields = hidden_fields(page, f"{path}/test")
    # to a list the check page was not shown for: rendered now, not from the desk's cache
    fields.update(list="other", addresses="relay@example.org")
    revoke_while_rendering(desk.db.sessions, "ed")
    r = c.post(f"{path}/test", data=fields)
    assert r.status_code == 401, r.text
    assert "nothing was done" in r.text
    assert _mails_out(desk.settings) == 0


HOSTILE_NAMES = (
    "Ada\x00Lovelace",  # PostgreSQL refuses NUL in text: it was a 500
    "Ada\r\nBcc: evil@example.net",
    "\x1b[31mAda",  # a terminal escape, printed by mailer subscribers show
    "\u202eadA",  # a bidi override
    "Ada\u2028Lovelace",
    "A" * 201,
)


def test_a_readers_name_from_the_api_follows_the_web_forms_rule(api: Api) -> None:
    """The subscribe and preferences forms refuse these names; the API stored them as sent
    (subscribers.addresses holds the rule both use now). Refused by name, nothing stored."""
    with api.as_editor() as c:
        for i, name in enumerate(HOSTILE_NAMES):
            r = c.post(
                "/api/v1/lists/brief/subscribers",
                json={"email": f"p{i}@example.org", "name": name, "confirmed": True},
            )
            assert r.status_code == 422, (repr(name), r.status_code, r.text)
            assert "name" in r.json()["error"], r.text
        r = c.post(
            "/api/v1/lists/brief/subscribers",
            json={
                "email": "fine@example.org",
                "name": "  Zoë O'Brien-Łukasz 李  ",
                "confirmed": True,
            },
        )
        assert r.status_code == 201, r.text
    with api.db.sessions() as s:
        assert store.get_subscriber(s, "fine@example.org").name == "Zoë O'Brien-Łukasz 李"
        for i in range(len(HOSTILE_NAMES)):
            assert (
                s.scalar(select(Subscriber).where(Subscriber.email == f"p{i}@example.org")) is None
            )


def test_a_sign_in_next_with_a_trailing_line_break_goes_to_the_desk(desk: Desk) -> None:
    """``$`` in the desk's ``next`` pattern also matched before a final newline, so
    ``/desk/campaigns\\n`` passed as a desk page and the editor landed on a 404
    (``/desk/campaigns%0A``) after signing in."""
    for odd in ("/desk/campaigns\n", "/desk\n"):
        r = sign_in(desk.client(), desk.editor_token, next_path=odd)
        assert r.status_code == 303 and r.headers["location"] == "/desk", repr(odd)


def test_a_token_name_or_idempotency_key_with_a_trailing_newline_is_refused() -> None:
    """``$`` matched before a final newline: ``mailer tokens create --name 'ed<LF>'`` stored
    a name that ``mailer tokens revoke ed`` then could not find."""
    with pytest.raises(InputError):
        tokens.check_name("ed\n")
    with pytest.raises(InputError):
        idempotency.check_key("key-1\n")
    assert tokens.check_name("ed") == "ed" and idempotency.check_key("key-1") == "key-1"
