"""``/metrics``: Prometheus exposition, behind the same switch as /admin (MAILER_ADMIN_TOKEN).

Each app has its own ``CollectorRegistry`` (:class:`AppMetrics`, on ``app.state.metrics``),
never prometheus-client's global one, so several apps in one process (tests) never share a
number. Most figures live in the database, where every worker writes them, so they are
read at scrape time by :class:`LedgerCollector` (a handful of aggregate queries):

    mailer_deliveries_total{state,transport}     rows sent / failed / skipped (counter)
    mailer_feedback_events_total{type}           SES events stored, by type (counter)
    mailer_queue_depth{campaign}                 rows queued or in flight per campaign
    mailer_campaigns{status}                     campaigns by status
    mailer_send_rate                             messages accepted per second, last minute
    mailer_send_rate_limit                       MAILER_SEND_RATE (0: SES's MaxSendRate)
    mailer_bounce_rate{window}                   hard bounces / sent, 1d and 7d
    mailer_complaint_rate{window}                complaints / sent, 1d and 7d
    mailer_campaign_bounce_rate{campaign}        the same for campaigns sending or paused
    mailer_campaign_complaint_rate{campaign}
    mailer_suppressions{reason}                  the suppression list by reason
    mailer_ledger_up                             1 when the database answered the scrape

What happens inside this process is counted in place:

    mailer_webhook_verification_failures_total   SNS messages the webhook refused (403)
    mailer_rate_limit_unavailable_total{limit}   hits let through uncounted: the limits'
                                                 storage (Redis) did not answer
    mailer_tracking_dropped_total                clicks and opens answered but not kept:
                                                 MAX_PENDING were waiting for the database
    mailer_tracking_queued                       clicks and opens waiting to be written

The webhook increments it with ``record_webhook_verification_failure(request)``.
``transport`` is MAILER_TRANSPORT: the ledger does not record which transport sent a row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.responses import Response

from mailer.feedback.models import FeedbackEvent
from mailer.feedback.tracking.intake import TrackingIntake
from mailer.feedback.tracking.models import CLICK, HUMAN, MACHINE, OPEN, PROXY
from mailer.ops import engagement, stats
from mailer.sending.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from mailer.web.admin import check_admin_auth
from mailer.web.state import WebState, web_state
from subscribers.models import Suppression

__all__ = [
    "AppMetrics",
    "LedgerCollector",
    "TrackingCollector",
    "app_metrics",
    "metrics_router",
    "record_webhook_verification_failure",
]

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_FINAL_STATES = (
    DeliveryStatus.SENT.value,
    DeliveryStatus.FAILED.value,
    DeliveryStatus.SKIPPED.value,
)
_WINDOWS = (("1d", timedelta(days=1)), ("7d", timedelta(days=7)))


class LedgerCollector(Collector):
    """Reads the delivery ledger at scrape time."""

    def __init__(self, state: WebState) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        return []  # collected lazily: nothing to describe before the database answers

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mailer_ledger_up", "1 when the database answered this scrape")
        try:
            families = self._families()
        except Exception as err:  # the scrape still answers, saying the ledger is down
            log.warning("metrics: the database did not answer: %s", err)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        state = self.state
        settings = state.settings
        now = state.now()
        out: list[Metric] = []
        with state.sessions() as session:
            deliveries = CounterMetricFamily(
                "mailer_deliveries",
                "Delivery rows that reached a final state",
                labels=["state", "transport"],
            )
            by_state = dict(
                session.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.status.in_(_FINAL_STATES))
                    .group_by(Delivery.status)
                ).all()
            )
            for name in _FINAL_STATES:
                deliveries.add_metric([name, settings.transport], float(by_state.get(name, 0)))
            out.append(deliveries)

            events = CounterMetricFamily(
                "mailer_feedback_events", "SES events stored, by type", labels=["type"]
            )
            for kind, n in session.execute(
                select(FeedbackEvent.event_type, func.count()).group_by(FeedbackEvent.event_type)
            ):
                events.add_metric([kind], float(n))
            out.append(events)

            depth = GaugeMetricFamily(
                "mailer_queue_depth",
                "Delivery rows queued or in flight, per campaign",
                labels=["campaign"],
            )
            for campaign_id, n in sorted(stats.queue_depths(session).items()):
                depth.add_metric([str(campaign_id)], float(n))
            out.append(depth)

            campaigns = GaugeMetricFamily(
                "mailer_campaigns", "Campaigns by status", labels=["status"]
            )
            counts = dict(
                session.execute(
                    select(Campaign.status, func.count()).group_by(Campaign.status)
                ).all()
            )
            for status in CampaignStatus:
                campaigns.add_metric([status.value], float(counts.get(status.value, 0)))
            out.append(campaigns)

            out.append(
                GaugeMetricFamily(
                    "mailer_send_rate",
                    "Messages accepted per second over the last minute",
                    value=stats.send_rate(session, now=now),
                )
            )
            out.append(
                GaugeMetricFamily(
                    "mailer_send_rate_limit",
                    "MAILER_SEND_RATE in messages per second (0: SES's MaxSendRate applies)",
                    value=settings.send_rate,
                )
            )

            bounce = GaugeMetricFamily(
                "mailer_bounce_rate", "Hard bounces / sent, by window", labels=["window"]
            )
            complaint = GaugeMetricFamily(
                "mailer_complaint_rate", "Complaints / sent, by window", labels=["window"]
            )
            for label, span in _WINDOWS:
                c = stats.counts_since(session, now - span)
                bounce.add_metric([label], c.bounce_rate or 0.0)
                complaint.add_metric([label], c.complaint_rate or 0.0)
            out += [bounce, complaint]

            c_bounce = GaugeMetricFamily(
                "mailer_campaign_bounce_rate",
                "Hard bounces / sent of campaigns sending or paused",
                labels=["campaign"],
            )
            c_complaint = GaugeMetricFamily(
                "mailer_campaign_complaint_rate",
                "Complaints / sent of campaigns sending or paused",
                labels=["campaign"],
            )
            active = session.scalars(
                select(Campaign.id).where(
                    Campaign.status.in_((CampaignStatus.SENDING.value, CampaignStatus.PAUSED.value))
                )
            ).all()
            if active:
                for cs in stats.campaign_stats(session, campaign_ids=active):
                    c_bounce.add_metric([str(cs.id)], cs.counts.bounce_rate or 0.0)
                    c_complaint.add_metric([str(cs.id)], cs.counts.complaint_rate or 0.0)
            out += [c_bounce, c_complaint]

            suppressions = GaugeMetricFamily(
                "mailer_suppressions", "Addresses on the suppression list", labels=["reason"]
            )
            for reason, n in session.execute(
                select(Suppression.reason, func.count()).group_by(Suppression.reason)
            ):
                suppressions.add_metric([reason], float(n))
            out.append(suppressions)

            tracking = CounterMetricFamily(
                "mailer_tracking_events",
                "Clicks and opens recorded (lists that track), by kind and human/machine/proxy",
                labels=["kind", "verdict"],
            )
            totals = engagement.event_totals(session)
            for kind in (CLICK, OPEN):
                for verdict in (HUMAN, MACHINE, PROXY):
                    tracking.add_metric([kind, verdict], float(totals.get((kind, verdict), 0)))
            out.append(tracking)
        return out


class LimitsCollector(Collector):
    """The rate limits' hits let through uncounted, read from the app's windows."""

    def __init__(self, state: WebState) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state = self.state
        family = CounterMetricFamily(
            "mailer_rate_limit_unavailable",
            "Hits let through uncounted because the limits' storage (Redis) did not answer",
            labels=["limit"],
        )
        for window in (
            state.ip_limiter,
            state.address_limiter,
            state.test_send_limiter,
            state.handover_limiter,
            state.sign_in_limiter,
        ):
            family.add_metric([window.name], float(window.unavailable))
        yield family


class TrackingCollector(Collector):
    """The redirect's intake in this process: hits waiting and hits not kept (issue 16)."""

    def __init__(self, intake: TrackingIntake) -> None:
        self.intake = intake

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "mailer_tracking_dropped",
            "Clicks and opens answered but not recorded: MAX_PENDING hits were already "
            "waiting for the database",
        )
        dropped.add_metric([], float(self.intake.dropped))
        yield dropped
        yield GaugeMetricFamily(
            "mailer_tracking_queued",
            "Clicks and opens waiting to be written",
            value=float(self.intake.writer.pending),
        )


class AppMetrics:
    """One app's registry and its in-process counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.webhook_verification_failures = Counter(
            "mailer_webhook_verification_failures",
            "SNS messages the webhook refused (signature, certificate, topic or age)",
            registry=self.registry,
        )
        self._ledger: LedgerCollector | None = None
        self._tracking: TrackingCollector | None = None

    def bind(self, state: WebState) -> None:
        """Register the ledger collector once, for this app's database."""
        with _LOCK:
            if self._ledger is None:
                self._ledger = LedgerCollector(state)
                self.registry.register(self._ledger)
                self.registry.register(LimitsCollector(state))

    def bind_tracking(self, intake: TrackingIntake) -> None:
        """Register the redirect intake's counters once (``app.state.tracking``)."""
        with _LOCK:
            if self._tracking is None:
                self._tracking = TrackingCollector(intake)
                self.registry.register(self._tracking)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def app_metrics(app: Any) -> AppMetrics:
    """The app's AppMetrics, created on first use (``app.state.metrics``)."""
    with _LOCK:
        found = getattr(app.state, "metrics", None)
        if not isinstance(found, AppMetrics):
            found = AppMetrics()
            app.state.metrics = found
        return found


def record_webhook_verification_failure(request: Request) -> None:
    """For the SES webhook: one more SNS message refused."""
    app_metrics(request.app).webhook_verification_failures.inc()


def metrics(request: Request) -> Response:
    state = web_state(request)
    check_admin_auth(state.settings, request.headers.get("authorization"))
    registry = app_metrics(request.app)
    registry.bind(state)
    intake = getattr(request.app.state, "tracking", None)
    if isinstance(intake, TrackingIntake):
        registry.bind_tracking(intake)
    return Response(
        registry.exposition(),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )


def metrics_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return router
