"""POST /webhooks/ses at the ASGI level: signed AWS-shaped events in, rows out; forgeries
change nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mailer.feedback.models import FeedbackEvent
from mailer.feedback.sns import SNSVerifier
from mailer.sending.models import Campaign, Delivery
from mailer.web.webhooks import MAX_BODY, ses_webhook_router
from subscribers import store
from subscribers.db import make_engine, session_factory
from subscribers.models import ConsentEvent, Subscription, Suppression
from tests.conftest import Database
from tests.plugins.mailer_server import free_port
from tests.plugins.sns_certs import TOPIC_ARN, SNSSigner

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"
ALL = sorted(p.stem for p in FIXTURES.glob("*.json"))
PATH = "/webhooks/ses"


class ASGIClient:
    """httpx against the ASGI app in-process (no server), one event loop per call."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def post(self, path: str, content: Any = b"", headers: dict[str, str] | None = None) -> Any:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hook") as client:
                return await client.post(path, content=content, headers=headers)

        return anyio.run(go)


@dataclass
class Hook:
    db: Database
    client: ASGIClient
    signer: SNSSigner
    confirmed: list[str] = field(default_factory=list)

    def post(self, envelope: dict[str, Any] | bytes, **headers: str) -> Any:
        body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
        kind = None if isinstance(envelope, bytes) else envelope.get("Type")
        if kind and "x_amz_sns_message_type" not in headers:
            headers["x-amz-sns-message-type"] = kind
        headers = {k.replace("_", "-"): v for k, v in headers.items()}
        return self.client.post(
            PATH, content=body, headers={"content-type": "text/plain", **headers}
        )

    def counts(self) -> tuple[int, ...]:
        with self.db.sessions() as s:
            return tuple(
                int(s.scalar(select(func.count()).select_from(m)) or 0)
                for m in (FeedbackEvent, Suppression, ConsentEvent, Subscription)
            )


@pytest.fixture
def hook(db: Database, sns_signer: SNSSigner) -> Iterator[Hook]:
    settings = db.settings(sns_topic_arns=(TOPIC_ARN,))
    app = FastAPI()
    handle = Hook(db, ASGIClient(app), sns_signer)
    app.include_router(
        ses_webhook_router(
            settings,
            db.sessions,
            verifier=SNSVerifier(settings, fetch_cert=sns_signer.fetch),
            confirm_get=handle.confirmed.append,
        )
    )
    yield handle


def fixture_text(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


def reader(db: Database, email: str = "reader@example.net") -> None:
    with db.sessions.begin() as s:
        for slug in ("brief", "weekly"):
            mlist = store.create_list(s, slug, name=slug, from_address=f"{slug}@newsletter.example")
            store.subscribe(s, email, mlist, confirmed=True)


@pytest.mark.parametrize("name", ALL)
def test_every_documented_event_is_accepted_and_stored(hook: Hook, name: str) -> None:
    version = "2" if ALL.index(name) % 2 else "1"  # both signature versions, alternating
    envelope = hook.signer.notification(fixture_text(name), version=version)
    response = hook.post(envelope)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "applied"
    with hook.db.sessions() as s:
        row = s.scalar(select(FeedbackEvent))
        assert row is not None
        assert row.sns_message_id == envelope["MessageId"]
        assert row.raw == json.loads(fixture_text(name))


def test_hard_bounce_through_the_webhook_suppresses(hook: Hook) -> None:
    reader(hook.db)
    response = hook.post(hook.signer.notification(fixture_text("event_bounce"), subject="x"))
    assert response.status_code == 200
    assert response.json()["actions"] == ["unmatched", "suppressed:hard_bounce:reader@example.net"]
    with hook.db.sessions() as s:
        row = store.find_suppression(s, "reader@example.net")
        assert row is not None and row.reason == "hard_bounce"


def test_complaint_through_the_webhook_unsubscribes_everywhere(hook: Hook) -> None:
    reader(hook.db)
    assert hook.post(hook.signer.notification(fixture_text("event_complaint"))).status_code == 200
    with hook.db.sessions() as s:
        assert set(s.scalars(select(Subscription.status))) == {"unsubscribed"}


def test_matched_delivery_is_reported(hook: Hook) -> None:
    reader(hook.db)
    event = json.loads(fixture_text("event_reject"))
    with hook.db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        campaign = Campaign(
            list_id=mlist.id, issue_key="k", subject="s", issue={}, html="", text=""
        )
        s.add(campaign)
        s.flush()
        s.add(
            Delivery(campaign_id=campaign.id, status="sent", message_id=event["mail"]["messageId"])
        )
    response = hook.post(hook.signer.notification(json.dumps(event)))
    assert response.json()["matched"] is True
    with hook.db.sessions() as s:
        assert s.scalar(select(Delivery.status)) == "failed"


def test_redelivery_answers_200_and_changes_nothing(hook: Hook) -> None:
    reader(hook.db)
    envelope = hook.signer.notification(fixture_text("event_complaint"))
    assert hook.post(envelope).json()["status"] == "applied"
    before = hook.counts()
    again = hook.post(envelope)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert hook.counts() == before


@pytest.mark.parametrize(
    ("forge", "expected"),
    [
        (lambda e: e.update(Message=e["Message"].replace("Permanent", "Transient")), "match"),
        (lambda e: e.update(Subject="changed"), "match"),
        (lambda e: e.update(TopicArn="arn:aws:sns:us-east-1:999999999999:x"), "TopicArn"),
        (lambda e: e.update(SigningCertURL="https://evil.example/c.pem"), "host"),
        (lambda e: e.update(SigningCertURL=e["SigningCertURL"].replace("https", "http")), "https"),
        (lambda e: e.update(Timestamp="2020-01-01T00:00:00.000Z"), "too old"),
        (lambda e: e.update(Signature="%%%"), "base64"),
        (lambda e: e.pop("Signature"), "missing"),
    ],
    ids=["message", "subject", "topic", "host", "http", "old", "base64", "missing"],
)
def test_forged_messages_get_403_and_change_no_row(hook: Hook, forge: Any, expected: str) -> None:
    reader(hook.db)
    before = hook.counts()
    envelope = hook.signer.notification(fixture_text("event_bounce"), subject="s")
    forge(envelope)
    response = hook.post(envelope)
    assert response.status_code == 403
    assert expected in response.json()["detail"]
    assert hook.counts() == before


def test_header_type_must_match_the_body(hook: Hook) -> None:
    envelope = hook.signer.notification(fixture_text("event_send"))
    response = hook.post(envelope, x_amz_sns_message_type="SubscriptionConfirmation")
    assert response.status_code == 403
    assert hook.counts()[0] == 0


def test_subscription_confirmation_is_confirmed(hook: Hook) -> None:
    envelope = hook.signer.confirmation()
    response = hook.post(envelope)
    assert response.status_code == 200
    assert hook.confirmed == [envelope["SubscribeURL"]]


def test_confirmation_for_a_foreign_topic_is_not_visited(hook: Hook) -> None:
    envelope = hook.signer.confirmation(topic_arn="arn:aws:sns:us-east-1:999999999999:other")
    assert hook.post(envelope).status_code == 403
    assert hook.confirmed == []


def test_failed_confirmation_asks_for_a_retry(db: Database, sns_signer: SNSSigner) -> None:
    settings = db.settings(sns_topic_arns=(TOPIC_ARN,))

    def down(url: str) -> None:
        raise OSError("network unreachable")

    app = FastAPI()
    app.include_router(
        ses_webhook_router(
            settings,
            db.sessions,
            verifier=SNSVerifier(settings, fetch_cert=sns_signer.fetch),
            confirm_get=down,
        )
    )
    response = ASGIClient(app).post(PATH, content=json.dumps(sns_signer.confirmation()))
    assert response.status_code == 502


def test_unsubscribe_confirmation_and_setup_message_are_acknowledged(hook: Hook) -> None:
    assert hook.post(hook.signer.confirmation("UnsubscribeConfirmation")).status_code == 200
    setup = hook.signer.notification(
        "Successfully validated SNS topic for Amazon SES event publishing."
    )
    response = hook.post(setup)
    assert response.status_code == 200
    assert response.json()["detail"] == "setup-test"
    assert hook.confirmed == []
    assert hook.counts()[0] == 0


def test_oversized_body_is_413(hook: Hook) -> None:
    envelope = hook.signer.notification("x" * (MAX_BODY + 10))
    assert hook.post(envelope).status_code == 413


def test_chunked_oversized_body_is_413(hook: Hook) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    response = hook.client.post(PATH, content=chunks())
    assert response.status_code == 413


@pytest.mark.parametrize(("body", "status"), [(b"{nope", 400), (b"[1]", 400), (b"", 400)])
def test_not_json_is_400(hook: Hook, body: bytes, status: int) -> None:
    assert hook.post(body).status_code == status


def test_signed_but_unreadable_event_is_400(hook: Hook) -> None:
    response = hook.post(hook.signer.notification('{"eventType": "Bounce"}'))
    assert response.status_code == 400
    assert "mail" in response.json()["detail"]


def test_error_while_applying_is_500_and_rolled_back(
    hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader(hook.db)
    before = hook.counts()
    envelope = hook.signer.notification(fixture_text("event_bounce"))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "suppress", broken)
    response = hook.post(envelope)
    assert response.status_code == 500
    assert hook.counts() == before
    monkeypatch.undo()
    assert hook.post(envelope).json()["status"] == "applied", "SNS's retry is applied"


#: Malformed but parseable JSON (issue 13, item 7): each is a 400, never a 500.
HOSTILE_JSON = {
    "100k-open-brackets": b"[" * 100_000,
    "50k-nested-objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "900k-digit-integer": b'{"Type": ' + b"9" * 900_000 + b"}",
    "65-levels": b"[" * 65 + b"]" * 65,
}


@pytest.mark.parametrize("body", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_hostile_json_body_is_400(hook: Hook, body: bytes) -> None:
    response = hook.post(body)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "nested more than 64 levels" in detail or "number longer than" in detail
    assert hook.counts()[0] == 0


@pytest.mark.parametrize(
    "message",
    ["[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, '{"n": ' + "9" * 200_000 + "}"],
    ids=["brackets", "objects", "digits"],
)
def test_hostile_json_inside_a_signed_message_is_400(hook: Hook, message: str) -> None:
    response = hook.post(hook.signer.notification(message))
    assert response.status_code == 400, response.text
    assert "SNS Message" in response.json()["detail"]
    assert hook.counts()[0] == 0


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_database_away_is_503_so_sns_retries(db: Database, sns_signer: SNSSigner) -> None:
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    settings = db.settings(database_url=dead, sns_topic_arns=(TOPIC_ARN,))
    engine = make_engine(dead)
    app = FastAPI()
    app.include_router(
        ses_webhook_router(
            settings,
            session_factory(engine),
            verifier=SNSVerifier(settings, fetch_cert=sns_signer.fetch),
        )
    )
    try:
        envelope = sns_signer.notification(fixture_text("event_bounce"))
        response = ASGIClient(app).post(PATH, content=json.dumps(envelope))
    finally:
        engine.dispose()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "30"
    assert response.json() == {"status": "error", "detail": "the database is unavailable"}
