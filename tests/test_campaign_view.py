"""mailer.ops.campaign_view (the API's, the desk's and the CLI's campaign JSON) on the ledger
of tests/ops_seed.py, whose figures are counted by hand there, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailer.errors import InputError, NotFoundError
from mailer.ops.campaign_view import campaign_view, campaign_views
from tests.conftest import Database
from tests.ops_seed import Seeded, seed

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _seed(db: Database) -> Seeded:
    with db.sessions.begin() as session:
        return seed(session, NOW)


def test_one_campaign_counts_rate_and_stats(db: Database) -> None:
    seeded = _seed(db)
    with db.sessions() as s:
        view = campaign_view(s, seeded.c1).to_json()
    assert view["id"] == seeded.c1
    assert (view["status"], view["list"], view["subject"]) == ("done", "brief", "Issue one")
    assert view["counts"] == {"queued": 0, "sending": 0, "sent": 17, "failed": 2, "skipped": 1}
    assert view["total"] == 20
    assert view["stats"] == {
        "delivered": 14,
        "hard_bounced": 2,
        "soft_bounced": 1,
        "complained": 1,  # a7's not-spam feedback is no complaint
        "unsubscribed": 2,  # a10 left before the send
        "opened": 5,
        "clicked": 2,
    }
    assert view["scheduled_at"] is None and view["pause_reason"] is None
    assert datetime.fromisoformat(view["created_at"]) < NOW


def test_in_flight_campaign_and_listing(db: Database) -> None:
    seeded = _seed(db)
    with db.sessions() as s:
        second = campaign_view(s, seeded.c2).to_json()
        newest = [v.id for v in campaign_views(s)]
        done = [v.id for v in campaign_views(s, status="done")]
        one = campaign_views(s, limit=1)
    assert second["counts"] == {"queued": 5, "sending": 1, "sent": 4, "failed": 0, "skipped": 0}
    assert second["stats"]["delivered"] == 2 and second["stats"]["soft_bounced"] == 1
    assert newest == sorted([seeded.c1, seeded.c2, seeded.c3], reverse=True)
    assert done == sorted([seeded.c1, seeded.c3], reverse=True)
    assert [v.id for v in one] == [max(seeded.c1, seeded.c2, seeded.c3)]


def test_bad_questions(db: Database) -> None:
    _seed(db)
    with db.sessions() as s:
        with pytest.raises(NotFoundError, match="no campaign 999"):
            campaign_view(s, 999)
        with pytest.raises(InputError, match="unknown status 'sent'"):
            campaign_views(s, status="sent")
        for limit in (0, -1, 101):
            with pytest.raises(InputError, match="limit"):
                campaign_views(s, limit=limit)
        assert campaign_views(s, status="cancelled") == []
