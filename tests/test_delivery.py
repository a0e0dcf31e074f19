"""The send engine against real transports: the outbox, and the SES-compatible test server
driven through boto3 over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer.errors import ConflictError
from mailer.render.tokens import Signer
from mailer.sending import campaigns as camp
from mailer.sending import lifecycle
from mailer.sending.engine import Engine
from mailer.sending.ledger import Sent, mark_sent
from mailer.sending.models import Campaign, Delivery
from mailer.sending.pacing import Pacer
from mailer.transports import make_transport
from subscribers import store
from subscribers.models import utcnow
from tests.conftest import Database
from tests.delivery_helpers import make_campaign, seed_list
from tests.support.ses_server import SesServer


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def bodies(msg: email.message.EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    # MIME text is CRLF on the wire; the rendered issue uses \n
    return (
        str(html.get_content()).replace("\r\n", "\n"),
        str(text.get_content()).replace("\r\n", "\n"),
    )


def test_outbox_every_reader_once_with_exact_bodies(db: Database) -> None:
    settings = db.settings(base_url="https://news.example.org")
    list_id, emails = seed_list(db.sessions, 30)
    with db.sessions.begin() as s:
        store.suppress(s, emails[0], "hard_bounce")  # never enqueued
        sub = store.get_subscriber(s, emails[1])
        store.unsubscribe(s, sub.id, None, actor=store.CLI)  # never enqueued
        pending = store.subscribe(s, "pending@example.com", store.get_list(s, "brief"))
        assert pending.subscription.status == "pending"
    cid, enqueued, rendered = make_campaign(db.sessions, settings)
    assert enqueued == 28
    # unsubscribed after enqueue: skipped at send time
    with db.sessions.begin() as s:
        late = store.get_subscriber(s, emails[2])
        store.unsubscribe(s, late.id, None, actor=store.CLI)
        late_id = late.id
    transport = make_transport(settings)
    with Engine(settings, db.sessions, transport) as engine:
        progress = engine.run(cid)
    assert (progress.sent, progress.failed, progress.skipped) == (27, 0, 1)
    files = sorted((settings.outbox_dir / str(cid)).glob("*.eml"))
    assert len(files) == 27
    signer = Signer.from_settings(settings)
    seen: set[str] = set()
    with db.sessions() as s:
        ids = {e: store.get_subscriber(s, e).id for e in emails[3:]}
    for path in files:
        raw = path.read_bytes()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert max(len(line) for line in head.split(b"\r\n")) <= 998
        assert max(len(line) for line in body.split(b"\r\n")) <= 78
        msg = parse(raw)
        to = str(msg["To"])
        assert to not in seen
        seen.add(to)
        sid = ids[to]
        unsub = f"https://news.example.org/unsubscribe/{signer.sign('unsubscribe', sid, list_id)}"
        prefs = f"https://news.example.org/preferences/{signer.preferences_token(sid, list_id)}"
        assert msg["List-Unsubscribe"] == f"<{unsub}>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Subject"] == rendered.subject
        assert str(msg["Message-ID"]).endswith("@example.org>")
        assert msg["Feedback-ID"].startswith(f"{cid}:brief:")
        assert "brief.example.org" in str(msg["List-Id"])
        want_html, want_text = rendered.personalize(
            {"unsubscribe_url": unsub, "preferences_url": prefs, "name": f"Reader {to[6:11]}"}
        )
        html, text = bodies(msg)
        assert html == want_html
        assert text == want_text
    assert seen == set(emails[3:])
    with db.sessions() as s:
        rep = camp.report(s, cid)
        assert rep.campaign.status == "done"
        assert rep.counts == {"sent": 27, "skipped": 1}
        late_row = s.scalar(select(Delivery).where(Delivery.subscriber_id == late_id))
        assert late_row is not None and late_row.status == "skipped"


def test_same_issue_twice_needs_force(db: Database) -> None:
    settings = db.settings()
    seed_list(db.sessions, 3)
    make_campaign(db.sessions, settings)
    with pytest.raises(ConflictError, match="already sent"):
        make_campaign(db.sessions, settings)
    _, n, _ = make_campaign(db.sessions, settings, force=True)
    assert n == 3


def ses_settings(db: Database, server: SesServer, **kw: Any) -> Any:
    base: dict[str, Any] = {
        "transport": "ses",
        "ses_endpoint_url": server.url,
        "ses_region": "us-east-1",
        "send_concurrency": 8,
        "batch_size": 50,
    }
    base.update(kw)
    return db.settings(**base)


@pytest.mark.parametrize("api", ["single", "bulk"])
def test_faults_still_deliver_everyone(
    db: Database, ses_server: SesServer, aws_env: dict[str, str], api: str
) -> None:
    """10% throttling + 2% 5xx + latency spikes: everyone delivered, nobody failed."""
    settings = ses_settings(db, ses_server, ses_api=api)
    _, emails = seed_list(db.sessions, 400)
    cid, _, _ = make_campaign(db.sessions, settings)
    ses_server.configure(
        latency=0.002,
        spike_probability=0.02,
        spike_latency=0.15,
        throttle_probability=0.10,
        error_probability=0.02,
        max_send_rate=0,
        seed=7,
    )
    with Engine(settings, db.sessions, make_transport(settings), sleep=_fast_sleep) as engine:
        progress = engine.run(cid)
    assert progress.failed == 0
    assert progress.sent == 400
    got = ses_server.recipients()
    assert set(got) == set(emails)
    assert all(n == 1 for n in got.values())
    calls = ses_server.stats()["calls"]
    op = "SendEmail" if api == "single" else "SendBulkEmail"
    assert sum(n for outcome, n in calls[op].items() if outcome != "ok") > 0  # faults happened
    with db.sessions() as s:
        assert camp.report(s, cid).counts == {"sent": 400}
        ids = {d.message_id for d in s.scalars(select(Delivery).where(Delivery.campaign_id == cid))}
    assert ids == {m.message_id for m in ses_server.messages()}


def _fast_sleep(seconds: float) -> None:
    threading.Event().wait(min(seconds, 0.05))


def test_account_suspended_pauses_and_stops_calling(
    db: Database, ses_server: SesServer, aws_env: dict[str, str]
) -> None:
    settings = ses_settings(db, ses_server, send_concurrency=1, batch_size=20)
    seed_list(db.sessions, 100)
    cid, _, _ = make_campaign(db.sessions, settings)
    ses_server.configure(max_send_rate=0)
    sent_before = 30

    def suspend_after(progress: Any) -> None:
        if progress.sent >= sent_before and not ses_server.config.account_suspended:
            ses_server.configure(account_suspended=True)

    with Engine(settings, db.sessions, make_transport(settings), on_progress=suspend_after) as e:
        progress = e.run(cid)
    calls_after_pause = ses_server.stats()["calls"]["SendEmail"]
    assert progress.status == "paused"
    assert "AccountSuspended" in (progress.reason or "")
    assert calls_after_pause.get("AccountSuspendedException", 0) == 1  # one call, then none
    with db.sessions() as s:
        rep = camp.report(s, cid)
    assert rep.campaign.status == "paused"
    sent = rep.counts["sent"]
    assert sent == len(ses_server.messages()) and 40 <= sent < 100
    assert rep.counts["queued"] == 100 - sent and "sending" not in rep.counts
    # resuming after the account is fine again sends the rest, once each
    ses_server.configure(account_suspended=False)
    with db.sessions.begin() as s:
        lifecycle.resume(s, cid)
    with Engine(settings, db.sessions, make_transport(settings)) as engine:
        assert engine.run(cid).status == "done"
    assert sorted(ses_server.recipients().values()) == [1] * 100


def test_rejected_address_fails_only_that_row(
    db: Database, ses_server: SesServer, aws_env: dict[str, str]
) -> None:
    settings = ses_settings(db, ses_server)
    _, emails = seed_list(db.sessions, 20)
    ses_server.configure(reject_addresses=[emails[4]], max_send_rate=0)
    cid, _, _ = make_campaign(db.sessions, settings)
    with Engine(settings, db.sessions, make_transport(settings)) as engine:
        progress = engine.run(cid)
    assert (progress.sent, progress.failed) == (19, 1)
    with db.sessions() as s:
        rep = camp.report(s, cid)
    assert rep.campaign.status == "done"
    assert [(email_, cls) for _, email_, cls, _ in rep.failures] == [(emails[4], "RejectedError")]


class SlotClock:
    """A pacing clock that stands still; each sleep is recorded as the slot it waits for."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slots: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slots.append(self.now + seconds)


def test_pacer_spaces_calls_by_cost_and_honours_the_reserved_start() -> None:
    clock = SlotClock()
    pacer = Pacer(clock.sleep, clock)
    pacer.wait()  # no rate: never waits
    pacer.rate = 100.0
    for _ in range(3):
        pacer.wait(cost=5)  # 5 messages a call: 50 ms apart
    pacer.wait(not_before=1000.5)  # a batch whose slot starts later waits for it
    pacer.wait()
    assert clock.slots == pytest.approx([1000.05, 1000.10, 1000.5, 1000.51])
    pacer.throttled()  # half speed after throttling, and back by steps when calm
    pacer.wait()
    pacer.wait()
    assert clock.slots[-2:] == pytest.approx([1000.52, 1000.54])
    for _ in range(10):
        pacer.calm()
    assert pacer.factor == 1.0


def test_rate_limit_from_setting(
    db: Database, ses_server: SesServer, aws_env: dict[str, str]
) -> None:
    """MAILER_SEND_RATE=100 through SendEmail, read from the slots the Pacer computes on its
    injected clock (standing still, so nothing is measured): SendEmail's calls go out 5
    messages at a time (rate x BURST_SECONDS), each group in a slot of its own at least
    5/100 s after the last; batches of 25 reserve 0.25 s each on the campaign's cursor."""
    settings = ses_settings(db, ses_server, send_rate=100.0, batch_size=25)
    seed_list(db.sessions, 150)
    cid, _, _ = make_campaign(db.sessions, settings)
    ses_server.configure(max_send_rate=0)
    clock = SlotClock()
    transport = make_transport(settings)
    with Engine(settings, db.sessions, transport, sleep=clock.sleep, clock=clock) as engine:
        progress = engine.run(cid)
    assert progress.sent == 150
    assert sorted(ses_server.recipients().values()) == [1] * 150
    assert ses_server.calls("SendEmail") == {"ok": 150}
    # 30 transport calls of 5: the first goes at once, the other 29 wait for slots of their own
    slots = sorted(clock.slots)
    assert len(slots) == 29
    gaps = [b - a for a, b in zip([1000.0, *slots], slots, strict=False)]
    assert min(gaps) >= 0.05 - 1e-9  # never faster than 100/s
    # and no slower than the reservations: 30 calls of 50 ms, plus at most the part of one
    # batch's slot that another batch's call could take ahead of its turn
    assert 1.45 - 1e-9 <= slots[-1] - 1000.0 <= 1.45 + 0.25 + 1e-9
    with db.sessions() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None and campaign.started_at and campaign.rate_cursor
        assert (campaign.rate_cursor - campaign.started_at).total_seconds() >= 1.5


def test_quota_pauses_before_exceeding(
    db: Database, ses_server: SesServer, aws_env: dict[str, str]
) -> None:
    settings = ses_settings(db, ses_server, batch_size=10)
    seed_list(db.sessions, 50)
    cid, _, _ = make_campaign(db.sessions, settings)
    ses_server.configure(max_send_rate=0, max_24h=30, sent_last_24h_offset=5)
    with Engine(settings, db.sessions, make_transport(settings)) as engine:
        progress = engine.run(cid)
    assert progress.status == "paused" and "quota" in (progress.reason or "")
    assert len(ses_server.messages()) == 25


def test_sqlite_allows_one_sender(tmp_path: Path, db: Database) -> None:
    if db.backend != "sqlite":
        pytest.skip("the single-sender lease is SQLite's")
    settings = db.settings()
    first = Engine(settings, db.sessions, make_transport(settings))
    first.start()
    try:
        second = Engine(settings, db.sessions, make_transport(settings))
        with pytest.raises(ConflictError, match="one sending worker"):
            second.start()
    finally:
        first.close()
    third = Engine(settings, db.sessions, make_transport(settings))
    third.start()  # free again
    third.close()


def test_sent_rows_are_marked_with_their_exact_message_ids(db: Database) -> None:
    """The batch's sent rows are marked in one statement (a JSON array on SQLite, arrays
    on PostgreSQL): every id lands on its own row, whatever characters it holds."""
    seed_list(db.sessions, 6)
    cid, enqueued, _ = make_campaign(db.sessions, db.settings())
    assert enqueued == 6
    odd = ["plain-0001", 'quote"d', "back\\slash", "中文-✓", "x" * 255, "<a.b@ses>"]
    with db.sessions.begin() as s:
        ids = list(s.scalars(select(Delivery.id).where(Delivery.campaign_id == cid)))
        rows = [Sent(i, m) for i, m in zip(ids[:5], reversed(odd[:5]), strict=True)]
        rows.append(Sent(ids[5], odd[5]))
        mark_sent(s.connection(), rows, utcnow())
    with db.sessions() as s:
        stored = {d.id: d for d in s.scalars(select(Delivery).where(Delivery.campaign_id == cid))}
    for row in rows:
        delivery = stored[row.delivery_id]
        assert (delivery.status, delivery.message_id) == ("sent", row.message_id)
        assert delivery.sent_at is not None and delivery.error is None
