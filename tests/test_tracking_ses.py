"""SES's own open and click events into the tracking records (issue 16), on SQLite and
PostgreSQL, through the feedback rules every entrance uses (webhook, queue, ingest); and
`mailer ses setup --tracking` against the SES-compatible test server."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import select

from mailer.feedback.events import parse_event
from mailer.feedback.rules import apply_event
from mailer.feedback.tracking.models import TrackingEvent
from mailer.ops.aws import AwsClients
from mailer.ops.provisioning import DESTINATION_NAME, EVENT_TYPES, setup
from mailer.render.tokens import Signer
from mailer.render.tracking import verify_click, verify_open
from mailer.sending.models import Delivery
from subscribers import store
from subscribers.tracking import Track, set_tracking
from tests.conftest import Database
from tests.plugins.aws import REGION, MotoHandle
from tests.ses_provisioning import ProvisioningProxy
from tests.support.ses_server import SesServer
from tests.test_tracking import three_items
from tests.web_support import make_list, send_issue, wait_for_mail

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"
DOMAIN = "news.example.com"
WEBHOOK = f"https://{DOMAIN}/webhooks/ses"
CONFIG_SET = "brief"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"


def _sent(db: Database) -> tuple[int, int, str, Any]:
    make_list(db.sessions)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        store.subscribe(s, "ada@example.com", mlist, confirmed=True)
        set_tracking(s, mlist.id, Track(clicks=True, opens=True))
    settings = db.settings(base_url="http://testserver")
    cid = send_issue(db.sessions, settings, three_items())
    wait_for_mail(settings.outbox_dir / str(cid))
    with db.sessions() as s:
        delivery, message_id, sent_at = s.execute(
            select(Delivery.id, Delivery.message_id, Delivery.sent_at).where(
                Delivery.campaign_id == cid
            )
        ).one()
    return cid, delivery, message_id or "0100-unrecorded", sent_at


def _event(kind: str, cid: int, delivery: int, message_id: str, **detail: Any) -> dict[str, Any]:
    name = {"Open": "event_open.json", "Click": "event_click.json"}[kind]
    data: dict[str, Any] = copy.deepcopy(json.loads((FIXTURES / name).read_text()))
    data["mail"]["messageId"] = message_id
    data["mail"]["commonHeaders"]["messageId"] = message_id
    data["mail"]["tags"]["campaign"] = [str(cid)]
    data["mail"]["tags"]["delivery"] = [str(delivery)]
    data[kind.lower()].update(detail)
    return data


def test_ses_open_and_click_events_become_tracking_events(db: Database) -> None:
    cid, delivery, message_id, sent_at = _sent(db)
    later = (sent_at + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    soon = (sent_at + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    events = [
        _event("Open", cid, delivery, message_id, userAgent="Mozilla/5.0", timestamp=later),
        _event("Open", cid, delivery, message_id, userAgent=CHROME, timestamp=later),
        _event(
            "Click",
            cid,
            delivery,
            message_id,
            link="https://news.example.net/story/2?a=1&b=2",
            userAgent=CHROME,
            timestamp=later,
        ),
        _event(
            "Click",
            cid,
            delivery,
            message_id,
            link="https://news.example.net/story/3?a=1&b=3",
            userAgent=CHROME,
            timestamp=soon,
        ),
        # a link that is not one of the issue's stories: kept as feedback, not a click
        _event("Click", cid, delivery, message_id, link="https://elsewhere.example/x"),
    ]
    outcomes = []
    for n, data in enumerate(events):
        with db.sessions.begin() as s:
            outcomes.append(apply_event(s, parse_event(data, f"sns-{n}"), db.settings()))
    assert [o.actions for o in outcomes] == [
        ("tracked: proxy",),
        ("tracked: human",),
        ("tracked: human",),
        ("tracked: machine",),
        ("not tracked: link not in the issue",),
    ]
    with db.sessions() as s:
        rows = list(s.scalars(select(TrackingEvent).order_by(TrackingEvent.id)))
    assert [(r.kind, r.link, r.verdict, r.source) for r in rows] == [
        ("open", None, "proxy", "ses"),
        ("open", None, "human", "ses"),
        ("click", 1, "human", "ses"),
        ("click", 2, "machine", "ses"),
    ]
    assert "MAILER_TRACK_MIN_DELAY" in rows[3].reason
    # a redelivery of the same SNS message changes nothing
    with db.sessions.begin() as s:
        again = apply_event(s, parse_event(events[2], "sns-2"), db.settings())
    assert again.status == "duplicate"
    with db.sessions() as s:
        assert len(list(s.scalars(select(TrackingEvent)))) == 4


@pytest.fixture
def proxy(moto: MotoHandle) -> Iterator[ProvisioningProxy]:
    with ProvisioningProxy(moto.url) as p:
        yield p


def test_ses_setup_tracking_adds_open_and_click(proxy: ProvisioningProxy, moto: MotoHandle) -> None:
    clients = AwsClients(
        sesv2=boto3.client("sesv2", region_name=REGION, endpoint_url=proxy.url),
        sns=boto3.client("sns", region_name=REGION, endpoint_url=moto.url),
        sqs=boto3.client("sqs", region_name=REGION, endpoint_url=moto.url),
    )
    plain = setup(clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK)
    events = proxy.destinations[CONFIG_SET][DESTINATION_NAME]["MatchingEventTypes"]
    assert set(events) == set(EVENT_TYPES) and "OPEN" not in events
    tracked = setup(
        clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK, tracking=True
    )
    assert any(line.startswith("updated  event destination") for line in tracked.steps)
    events = proxy.destinations[CONFIG_SET][DESTINATION_NAME]["MatchingEventTypes"]
    assert set(events) == set(EVENT_TYPES) | {"OPEN", "CLICK"}
    again = setup(
        clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK, tracking=True
    )
    assert any(line.startswith("exists   event destination") for line in again.steps)
    assert plain.topic_arn == tracked.topic_arn == again.topic_arn


def test_a_tracked_campaign_through_ses_bulk_fills_each_readers_links(
    db: Database, ses_server: SesServer
) -> None:
    """SES personalizes server-side: %%track%% becomes a template variable, and every
    reader's message carries links that verify for that reader's own delivery."""
    make_list(db.sessions)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        for n in range(3):
            store.subscribe(s, f"reader{n}@example.com", mlist, confirmed=True)
        set_tracking(s, mlist.id, Track(clicks=True, opens=True))
    settings = db.settings(
        base_url="https://news.example.com",
        transport="ses",
        ses_endpoint_url=ses_server.url,
        ses_region=REGION,
        ses_api="bulk",
    )
    cid = send_issue(db.sessions, settings, three_items())
    with db.sessions() as s:
        deliveries = {
            message_id: delivery_id
            for message_id, delivery_id in s.execute(
                select(Delivery.message_id, Delivery.id).where(Delivery.campaign_id == cid)
            )
        }
    signer = Signer.from_settings(settings)
    messages = ses_server.messages()
    assert len(messages) == 3
    for message in messages:
        _, html, text = message.rendered()
        assert html is not None and text is not None
        links = re.findall(r'href="https://news\.example\.com/r/([^"]+)"', html)
        assert len(links) == 7 and "%%" not in html and "{{" not in html
        delivery = deliveries[message.message_id]
        seen = {verify_click(signer, token) for token in links}
        assert {(t.campaign_id, t.delivery_id) for t in seen} == {(cid, delivery)}
        assert {t.link for t in seen} == {0, 1, 2, 3}
        (pixel,) = re.findall(r'src="https://news\.example\.com/o/([^"]+)"', html)
        assert verify_open(signer, pixel).delivery_id == delivery
        assert "/r/" not in text
