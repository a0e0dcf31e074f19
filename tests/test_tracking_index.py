"""The intake's burst check finds one message's clicks by message and time (migration 0010).

With an index on ``delivery_id`` alone, each batch read the message's whole click history and
filtered it by time row by row (EXPLAIN showed it); ``ix_tracking_events_delivery_at`` lets
the database go straight to the few seconds around the batch.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from mailer.feedback.tracking.models import CLICK, TrackingEvent
from subscribers.models import utcnow
from tests.conftest import Database


def _plan(db: Database) -> str:
    ev = TrackingEvent
    now = utcnow()
    query = select(ev.id, ev.delivery_id, ev.link, ev.at).where(
        ev.delivery_id.in_([1, 2, 3]),
        ev.kind == CLICK,
        ev.at >= now - timedelta(seconds=2),
        ev.at <= now + timedelta(seconds=2),
    )
    with db.engine.connect() as conn:
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        if db.backend == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
            return "\n".join(str(r[-1]) for r in rows)
        conn.execute(text("SET enable_seqscan = off"))  # an empty table: make the choice plain
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled}").all()
        return "\n".join(str(r[0]) for r in rows)


def test_the_burst_check_reads_a_message_s_clicks_by_delivery_and_time(db: Database) -> None:
    plan = _plan(db)
    assert "ix_tracking_events_delivery_at" in plan, plan
    if db.backend == "sqlite":  # both columns of the index used: a range, not a filter
        assert "delivery_id=? AND at>? AND at<?" in plan.replace(">=", ">").replace("<=", "<")
