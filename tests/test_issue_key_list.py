"""A Markdown issue's front-matter ``list:`` is not part of its key (the key covers what is
sent; mailer.issue.model.Issue.key says why that is harmless), and where it mattered: the
desk opened a second paste of the same issue as the list the first paste named.

SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.errors import ConflictError
from mailer.issue.files import parse_issue_text
from mailer.sending import publish
from subscribers import store
from tests.conftest import Database
from tests.delivery_helpers import seed_list
from tests.desk_support import Desk, paste

SOURCE = (Path(__file__).parent / "fixtures" / "issues" / "issue.md").read_text(encoding="utf-8")


def _for(slug: str) -> str:
    return SOURCE.replace("list: harbour-dispatch", f"list: {slug}")


def test_issues_differing_only_in_list_share_a_key_and_each_list_gets_it_once(
    db: Database,
) -> None:
    to_brief, to_other = parse_issue_text(_for("brief")), parse_issue_text(_for("other"))
    assert to_brief == to_other and to_brief.key() == to_other.key()
    assert parse_issue_text(SOURCE.replace("Guangzhou", "Shenzhen")).key() != to_brief.key()
    seed_list(db.sessions, 2)
    seed_list(db.sessions, 2, slug="other", domain="example.net")
    with db.sessions() as s:
        brief, other = store.get_list(s, "brief"), store.get_list(s, "other")
    for mlist, issue in ((brief, to_brief), (other, to_other)):
        rendered = publish.render_for(db.settings(), mlist, issue)
        publish.create(db.sessions, mlist, issue, rendered)  # one campaign per list
    # the file that names `other`, sent to `brief` as well: a repeat there, refused
    rendered = publish.render_for(db.settings(), brief, to_other)
    with pytest.raises(ConflictError):
        publish.create(db.sessions, brief, to_other, rendered)


def test_a_second_paste_naming_another_list_opens_as_that_list(desk: Desk) -> None:
    c = desk.signed_in()
    first = paste(c, _for("other"))
    assert first.status_code == 303 and "?" not in first.headers["location"]
    assert "Previews for Other Letter" in c.get(first.headers["location"]).text
    again = paste(c, _for("brief"))  # the same issue, now for the other list: same key
    assert again.status_code == 303
    assert again.headers["location"].split("?")[0] == first.headers["location"]
    page = c.get(again.headers["location"]).text
    assert "Previews for The Test Brief" in page and "Previews for Other Letter" not in page
    # pasted again as the first: opens as its own list, without a query
    third = paste(c, _for("other"))
    assert third.headers["location"] == first.headers["location"]
