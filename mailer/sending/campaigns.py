"""Campaigns: create one (with a Delivery row per reader, set-based), find and report them.

The tables are in :mod:`mailer.sending.models`, every status change in
:mod:`mailer.sending.lifecycle`, the claims and marks of delivery rows in
:mod:`mailer.sending.ledger`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, Select, exists, func, insert, literal, select, text
from sqlalchemy.orm import Session

from mailer.errors import ConflictError
from mailer.issue.model import Issue
from mailer.sending import campaign_events, waves
from mailer.sending.models import (
    RELEASED,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    get_campaign,
)
from mailer.sending.report import CampaignReport as CampaignReport
from mailer.sending.report import latest as latest
from mailer.sending.report import report as report
from mailer.sending.schedule import Schedule
from subscribers.db import is_sqlite
from subscribers.models import (
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
    utcnow,
)
from subscribers.pg_options import insert_for

if TYPE_CHECKING:  # the renderer (jinja2, babel) is not imported to read campaigns
    from mailer.render.compiler import RenderedIssue


def recipients_query(list_id: int) -> Select[Any]:
    """Subscriber ids of the list's active, unsuppressed readers."""
    return (
        select(Subscription.subscriber_id)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.list_id == list_id,
            Subscription.status == "active",
            ~exists().where(Suppression.email == Subscriber.email),
        )
    )


def count_recipients(session: Session, mlist: MailingList) -> int:
    """How many readers a send to the list would enqueue now (a dry run's answer)."""
    query = select(func.count()).select_from(recipients_query(mlist.id).subquery())
    return session.scalar(query) or 0


def find_sent(session: Session, mlist: MailingList, issue_key: str) -> Campaign | None:
    """The list's live campaign of the issue (not cancelled or expired), the newest
    generation first: what a second send of the issue is refused with."""
    return session.scalar(
        select(Campaign)
        .where(
            Campaign.list_id == mlist.id,
            Campaign.issue_key == issue_key,
            Campaign.status.not_in(RELEASED),
        )
        .order_by(Campaign.generation.desc(), Campaign.id.desc())
        .limit(1)
    )


def create_campaign(
    session: Session,
    mlist: MailingList,
    issue: Issue,
    rendered: RenderedIssue,
    schedule: Schedule | None = None,
) -> tuple[Campaign, int]:
    """Create the campaign (the issue snapshot and its rendered bodies) and enqueue one
    Delivery per active, unsuppressed reader in one INSERT ... SELECT. Returns the campaign
    and the number of rows enqueued.

    A list gets an issue once. A live campaign of it is a ConflictError naming it, and so is
    losing a race: the unique index ``uq_campaigns_live_issue`` lets one of two sends started
    at once insert; the other inserts nothing (after waiting for the first to commit) and is
    told which campaign won. ``schedule.force`` sends it again as the next generation, which
    two forced sends at once both pick, so again only one gets in."""
    schedule = schedule or Schedule()
    key = issue.key()
    earlier = find_sent(session, mlist, key)
    if earlier is not None and (not schedule.force or _waiting(earlier)):
        raise _already_sent(mlist, earlier, forced=False)
    releases = None
    if schedule.at_local is not None:  # waves: it waits for the first reader's morning
        start = schedule.at or utcnow()
        releases = waves.plan(
            session, recipients_query(mlist.id), schedule.at_local, mlist.time_zone, start
        )
    values = {
        "list_id": mlist.id,
        "issue_key": key,
        "generation": earlier.generation + 1 if earlier is not None else 0,
        "subject": rendered.subject,
        "issue": issue.to_dict(),
        "html": rendered.html,
        "text": rendered.text,
        "archive_html": rendered.for_archive(),
        "status": CampaignStatus.SCHEDULED.value,
        "scheduled_at": schedule.at,
        "expires_at": schedule.expires_at,
        "reclaimed": 0,
    }
    if releases is not None:
        values["scheduled_at"] = releases.first or schedule.at
        values["at_local"] = releases.at_local
        values["waves"] = releases.waves()
        if schedule.wave_expiry is not None:
            values["wave_expiry"] = int(schedule.wave_expiry.total_seconds())
    stmt = _insert_unless_taken(session).values(values).returning(Campaign.id)
    campaign_id = session.scalar(stmt)
    if campaign_id is None:
        winner = find_sent(session, mlist, key)
        if winner is None:  # the winner was cancelled in the meantime
            raise ConflictError(
                f"another send of this issue to {mlist.slug} started at the same time; "
                "look at `mailer campaigns list`"
            )
        raise _already_sent(mlist, winner, forced=schedule.force)
    campaign = get_campaign(session, campaign_id)
    enqueued = enqueue(session, campaign, fresh=True, releases=releases)
    campaign_events.emit(campaign, "campaign.scheduled")
    return campaign, enqueued


def _insert_unless_taken(session: Session) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING on either database: a campaign the one-live index
    refuses is no row (after the competing transaction ends), not an aborted transaction."""
    insert_of = insert_for(session)
    stmt: Insert = insert_of(Campaign).on_conflict_do_nothing()
    return stmt


def _waiting(campaign: Campaign) -> bool:
    """Scheduled for a time (``--at``) and not started: a second send, even a forced one,
    would mail every reader twice; cancelling it is what the editor meant."""
    return campaign.status == CampaignStatus.SCHEDULED.value and campaign.scheduled_at is not None


def _already_sent(mlist: MailingList, earlier: Campaign, *, forced: bool) -> ConflictError:
    if _waiting(earlier):
        return ConflictError(
            f"this issue is already scheduled to {mlist.slug} as campaign {earlier.id} "
            f"for {earlier.scheduled_at:%Y-%m-%d %H:%M} UTC; "
            f"to send it at another time, `mailer campaigns cancel {earlier.id}` first"
        )
    again = (
        "another --force send of it started at the same time"
        if forced
        else "pass --force to send it again"
    )
    return ConflictError(
        f"this issue was already sent to {mlist.slug} as campaign {earlier.id} "
        f"({earlier.status}); {again}"
    )


def enqueue(
    session: Session,
    campaign: Campaign,
    *,
    fresh: bool = False,
    releases: waves.Plan | None = None,
) -> int:
    """One queued Delivery per recipient, set-based. Idempotent (unique per reader): rows
    already enqueued are left out, a check skipped for a ``fresh`` campaign (no rows yet).
    A wave campaign's rows get their ``release_at`` in the same statement (``releases``:
    each zone's, mailer.sending.waves; a later enqueue plans from now)."""
    source = recipients_query(campaign.list_id)
    before = 0
    if not fresh:
        already = select(Delivery.subscriber_id).where(Delivery.campaign_id == campaign.id)
        source = source.where(Subscription.subscriber_id.not_in(already))
        before = _count(session, campaign.id)
    columns = ["campaign_id", "subscriber_id", "status", "attempts"]
    queued = (literal(campaign.id), literal(DeliveryStatus.QUEUED.value), literal(0))
    if campaign.at_local is None:
        rows = source.subquery()
        picked = select(queued[0], rows.c.subscriber_id, *queued[1:])
    else:
        if releases is None:
            mlist = session.get(MailingList, campaign.list_id)
            zone = mlist.time_zone if mlist else None
            releases = waves.plan(session, source, campaign.at_local, zone, utcnow())
        columns.append("release_at")
        picked = source.with_only_columns(
            queued[0], Subscription.subscriber_id, *queued[1:], releases.release_column()
        )
    stmt = insert(Delivery).from_select(columns, picked)
    session.execute(stmt)
    added = _count(session, campaign.id) - before  # rowcount is -1 for this on psycopg
    analyze(session, "deliveries", "subscribers", "subscriptions")
    return added


def _count(session: Session, campaign_id: int) -> int:
    query = select(func.count()).where(Delivery.campaign_id == campaign_id)
    return session.scalar(query) or 0


def analyze(session: Session, *tables: str) -> None:
    """Refresh planner statistics after a bulk change: with stale ones PostgreSQL plans the
    per-batch claim queries as scans of the whole list (seen: 160 ms instead of 1 ms)."""
    if is_sqlite(session):
        session.execute(text("ANALYZE"))
    else:
        session.execute(text("ANALYZE " + ", ".join(tables)))


def runnable(session: Session, now: datetime) -> list[int]:
    """Campaigns a worker should send now: sending ones, and scheduled ones that are due.
    A wave campaign (``--at-local``) between waves is not: it is runnable while a row is
    released, in flight, or none is queued (to finish), so a worker sleeps until the next
    wave instead of running it over and over."""
    first = waves.first_queued_release(Campaign.id)
    between_waves = (first > now) & waves.first_in_flight(Campaign.id).is_(None)
    return list(
        session.scalars(
            select(Campaign.id)
            .where(
                (
                    (Campaign.status == CampaignStatus.SENDING)
                    & (Campaign.at_local.is_(None) | ~func.coalesce(between_waves, False))
                )
                | (
                    (Campaign.status == CampaignStatus.SCHEDULED)
                    & ((Campaign.scheduled_at.is_(None)) | (Campaign.scheduled_at <= now))
                )
            )
            .order_by(Campaign.id)
        )
    )
