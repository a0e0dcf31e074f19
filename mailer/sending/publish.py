"""The editor's use cases, the same for every entrance (CLI, HTTP API, web desk).

An entrance parses its input into objects (an :class:`~mailer.issue.model.Issue`, a
:class:`~mailer.render.compiler.RenderedIssue`, a ``MailingList``, a :class:`Schedule`),
calls one function here and formats the small frozen result it gets back. Nothing here
prints, reads files or knows about exit codes: a second copy of a use case in an entrance
is a bug waiting for its first divergence (docs/architecture.md principle 11).

    check, preview                  an issue file before anything is sent
    render_for                      render once, the "view in browser" link on the archive
    dry_run, send_test              count the readers; the real issue to a few addresses
    create -> run                   one campaign per issue and list (scheduled or now), sent
    run_due                         what a worker sends: scheduled and resumed campaigns
    pause, resume, cancel, retry_failed
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.issue.model import Issue
from mailer.render.compiler import Branding, RenderedIssue, render_issue
from mailer.render.list_brand import branding_for
from mailer.render.message import MessageTemplate, build_preview_message
from mailer.render.subject import choose_subject
from mailer.render.tokens import Signer
from mailer.sending import campaigns, lifecycle, stale_mail
from mailer.sending.engine import Engine, Progress, reader_message
from mailer.sending.leases import reap_dead_local_workers, sqlite_sender
from mailer.sending.ledger import state_counts
from mailer.sending.models import CampaignStatus, DeliveryStatus, get_campaign
from mailer.sending.schedule import Schedule
from mailer.sending.waves import next_release
from mailer.transports.base import Transport
from mailer.urls import archive_url
from subscribers.addresses import normalize_email
from subscribers.db import is_sqlite
from subscribers.models import MailingList, utcnow

__all__ = [
    "Checked",
    "Created",
    "DryRun",
    "Ending",
    "Outcome",
    "Preview",
    "Schedule",
    "SentTest",
    "StateChange",
    "cancel",
    "check",
    "create",
    "dry_run",
    "pause",
    "preview",
    "render_for",
    "resume",
    "retry_failed",
    "run",
    "run_due",
    "send_test",
]

#: the sample message's recipient when the editor names none
SAMPLE_TO = "reader@example.com"


def _size(body: str) -> int:
    return len(body.encode("utf-8"))


# -- an issue before sending ---------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """An issue that parsed and rendered: what `issue check` summarizes."""

    issue: Issue
    rendered: RenderedIssue
    list_slug: str | None  # the list the file declares (Markdown front matter), if any

    @property
    def key(self) -> str:
        return self.issue.key()

    @property
    def html_bytes(self) -> int:
        return _size(self.rendered.html)

    @property
    def text_bytes(self) -> int:
        return _size(self.rendered.text)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.rendered.warnings


def check(
    settings: Settings,
    issue: Issue,
    *,
    newsletter: str,
    list_slug: str | None = None,
    subject: str | None = None,
) -> Checked:
    """Render the issue as it would go out; the editor's warnings come with it.
    ``subject``: the editor's own for this send (else the issue's)."""
    chosen = choose_subject(issue, newsletter, override=subject)
    branding = Branding.from_settings(settings, newsletter)
    return Checked(issue, render_issue(issue, branding, subject=chosen), list_slug)


@dataclass(frozen=True)
class Preview:
    """The issue filled for a sample reader, as a message and as the web edition."""

    html: str
    text: str
    eml: bytes
    archive_html: str
    warnings: tuple[str, ...]


def sample_values(settings: Settings) -> dict[str, str]:
    """Reader fields for previews: clearly fake tokens under the real base URL."""
    base = settings.public_base
    return {
        "unsubscribe_url": f"{base}/unsubscribe/SAMPLE-TOKEN",
        "preferences_url": f"{base}/preferences/SAMPLE-TOKEN",
        "name": "Sample Reader",
    }


def preview(
    settings: Settings,
    issue: Issue,
    *,
    newsletter: str,
    list_slug: str | None = None,
    from_address: str | None = None,
    to: str = SAMPLE_TO,
    archive_url: str | None = None,
    subject: str | None = None,
) -> Preview:
    """Render the issue and fill it for a sample reader; the message is built by the
    delivery engine's own MIME builder. From defaults to ``<newsletter> <news@base host>``;
    ``subject`` is the editor's own (else the issue's)."""
    rendered = render_issue(
        issue,
        Branding.from_settings(settings, newsletter, archive_url=archive_url),
        subject=choose_subject(issue, newsletter, override=subject),
    )
    values = sample_values(settings)
    html, text = rendered.personalize(values)
    eml = build_preview_message(
        rendered,
        from_address=from_address
        or f"{newsletter} <news@{urlsplit(settings.public_base).hostname}>",
        to=to,
        unsubscribe_url=values["unsubscribe_url"],
        preferences_url=values["preferences_url"],
        list_name=newsletter,
        list_slug=list_slug or "newsletter",
        name=values["name"],
    )
    return Preview(html, text, eml, rendered.for_archive(), rendered.warnings)


def render_for(
    settings: Settings, mlist: MailingList, issue: Issue, *, subject: str | None = None
) -> RenderedIssue:
    """Render once for the list, with "view in browser" pointing at the issue's archive page.

    The subject is ``subject`` (the editor's, for this send), else the list's subject
    template filled from the issue, else the issue's own (:mod:`mailer.render.subject`)."""
    url = archive_url(settings, mlist.slug, issue.key())
    chosen = choose_subject(
        issue, mlist.name, override=subject, template=mlist.subject_template, lang=mlist.lang
    )
    return render_issue(issue, branding_for(settings, mlist, archive_url=url), subject=chosen)


# -- a send that is not a campaign ---------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    """What a send would do now: nothing is written."""

    list_slug: str
    recipients: int
    subject: str
    html_bytes: int
    text_bytes: int


def dry_run(sessions: sessionmaker[Session], mlist: MailingList, rendered: RenderedIssue) -> DryRun:
    """Count the readers a send would enqueue now (active, not suppressed)."""
    with sessions() as s:
        recipients = campaigns.count_recipients(s, mlist)
    return DryRun(
        mlist.slug, recipients, rendered.subject, _size(rendered.html), _size(rendered.text)
    )


@dataclass(frozen=True)
class SentTest:
    """One test message: the transport's id, or why it failed."""

    to: str
    message_id: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def send_test(
    settings: Settings,
    transport: Transport,
    mlist: MailingList,
    rendered: RenderedIssue,
    addresses: Iterable[str],
) -> list[SentTest]:
    """The real rendered issue to a few addresses, subject ``[TEST]``. The ledger is
    untouched: no campaign, no delivery rows, and the links lead to no reader."""
    template = MessageTemplate.build(
        campaign_id=0,
        subject="[TEST] " + rendered.subject,
        from_address=mlist.from_address,
        reply_to=mlist.reply_to,
        html=rendered.html,
        text=rendered.text,
        list_name=mlist.name,
        list_slug=mlist.slug,
    )
    signer = Signer.from_settings(settings)
    batch = [
        reader_message(
            template,
            signer,
            settings.public_base,
            list_id=mlist.id,
            subscriber_id=0,  # no reader: the links lead to a "not found" page
            delivery_id=i,
            email=normalize_email(address),
            name="",
        )
        for i, address in enumerate(addresses)
    ]
    step = max(1, transport.max_batch)
    sent: list[SentTest] = []
    for i in range(0, len(batch), step):
        chunk = batch[i : i + step]
        results = transport.send(template.campaign, chunk)
        for msg, result in zip(chunk, results, strict=True):
            error = None if result.ok else str(result.error)
            sent.append(SentTest(msg.to, result.message_id if result.ok else None, error))
    return sent


# -- campaigns -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """A campaign with its readers queued; ``due`` when a sender should start it now."""

    campaign_id: int
    list_slug: str
    enqueued: int
    schedule: Schedule

    @property
    def due(self) -> bool:
        return self.schedule.is_due()


def create(
    sessions: sessionmaker[Session],
    mlist: MailingList,
    issue: Issue,
    rendered: RenderedIssue,
    schedule: Schedule | None = None,
    *,
    record: Callable[[Session, Created], None] | None = None,
) -> Created:
    """One campaign of the issue for the list, its readers queued, in one transaction.

    A list gets an issue once: a live campaign of it, or another send of it that wins a race
    against this one, is a ConflictError naming that campaign (``schedule.force`` sends it
    again, once however many are started together). ``record`` runs inside the same
    transaction with the result (the API keeps its idempotent answer there): if it raises,
    no campaign was created."""
    schedule = schedule or Schedule()
    with sessions.begin() as s:
        campaign, enqueued = campaigns.create_campaign(s, mlist, issue, rendered, schedule)
        if schedule.at_local is not None:  # waves: it starts with the first reader's morning
            schedule = replace(schedule, at=campaign.scheduled_at)
        created = Created(campaign.id, mlist.slug, enqueued, schedule)
        if record is not None:
            record(s, created)
        return created


class Ending(enum.StrEnum):
    """How a run of a campaign ended, for whoever has to act on it."""

    DONE = "done"  # every reader sent or skipped
    FAILED = "failed"  # done, but some rows failed (retry-failed sends them again)
    PAUSED = "paused"  # account-level refusal, quota, reputation guard, an operator
    EXPIRED = "expired"  # too late: the unsent readers were skipped
    CANCELLED = "cancelled"
    STOPPED = "stopped"  # asked to stop (SIGTERM); the rest is queued for a worker or resume
    WAITING = "waiting"  # --at-local: between waves; `mailer worker` sends the next one


@dataclass(frozen=True)
class Outcome:
    """A run of one campaign: this run's counts and the ledger's after it."""

    campaign_id: int
    status: str
    reason: str | None
    sent: int  # by this run
    failed: int
    skipped: int
    failed_rows: int  # in the ledger, from every run
    left: int  # queued or in flight
    next_release: datetime | None = None  # a wave campaign between waves: the next one

    @property
    def ending(self) -> Ending:
        if self.status == CampaignStatus.DONE:
            return Ending.FAILED if self.failed_rows else Ending.DONE
        if self.status in (CampaignStatus.PAUSED, CampaignStatus.EXPIRED, CampaignStatus.CANCELLED):
            return Ending(self.status)
        if self.status == CampaignStatus.SENDING and self.next_release is not None:
            return Ending.WAITING
        return Ending.STOPPED


def _outcome(sessions: sessionmaker[Session], progress: Progress) -> Outcome:
    with sessions() as s:
        counts = state_counts(s, progress.campaign_id)
    return Outcome(
        campaign_id=progress.campaign_id,
        status=progress.status,
        reason=progress.reason,
        sent=progress.sent,
        failed=progress.failed,
        skipped=progress.skipped,
        failed_rows=counts.get(DeliveryStatus.FAILED, 0),
        left=counts.get(DeliveryStatus.QUEUED, 0) + counts.get(DeliveryStatus.SENDING, 0),
        next_release=progress.next_release,
    )


#: what a run wraps around the engine's work (the CLI: SIGTERM -> stop after the batch)
Watch = Callable[[Engine], AbstractContextManager[object]]


def _unwatched(_engine: Engine) -> AbstractContextManager[object]:
    return nullcontext()


def run(
    settings: Settings,
    sessions: sessionmaker[Session],
    transport: Transport,
    campaign_id: int,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_answer: Callable[[Progress], None] | None = None,
    watch: Watch = _unwatched,
) -> Outcome:
    """Send the campaign here and now until nothing is left, or it pauses, expires, is
    cancelled or this process is asked to stop. ``on_progress`` hears of each written
    batch, ``on_answer`` of each answered message (on the send threads)."""
    engine = Engine(settings, sessions, transport, on_progress=on_progress, on_answer=on_answer)
    with engine, watch(engine):
        progress = engine.run(campaign_id)
    return _outcome(sessions, progress)


def run_due(engine: Engine, sessions: sessionmaker[Session]) -> Iterator[Outcome]:
    """One look for work, as a worker does it: the system mails a crashed sender left
    unfinished (:mod:`mailer.sending.stale_mail`), then every campaign that is sending, or
    scheduled and due, run in id order (each outcome as it ends) until the engine is asked
    to stop."""
    stale_mail.resend_stale(
        sessions, engine.settings, engine.signer, engine.transport, engine.worker_id, now=utcnow()
    )
    with sessions() as s:
        due = campaigns.runnable(s, engine.wall())
    for campaign_id in due:
        yield _outcome(sessions, engine.run(campaign_id))
        if engine.stopping:
            return


def sending_worker(sessions: sessionmaker[Session]) -> str | None:
    """On SQLite, the worker sending now (its id), if any: SQLite allows one sender at a time,
    so a send hands its campaign to that worker and follows it (:func:`follow`) instead
    of failing.
    None on PostgreSQL, where any number of workers send at once."""
    with sessions.begin() as s:
        if not is_sqlite(s):
            return None
        reap_dead_local_workers(s)
        return sqlite_sender(s)


def follow(
    sessions: sessionmaker[Session],
    campaign_id: int,
    *,
    on_progress: Callable[[Outcome], None] | None = None,
    poll: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Watch a campaign another worker sends, from the ledger, until it ends (done, paused,
    expired, cancelled), waits for its next wave (``--at-local``: hours, perhaps) or no
    worker is sending any more (then it is still scheduled or sending: the caller may send
    it itself). The counts are the ledger's, from every run."""
    while True:
        with sessions() as s:
            campaign = get_campaign(s, campaign_id)
            counts = state_counts(s, campaign_id)
            wave = None
            if campaign.at_local and campaign.status == CampaignStatus.SENDING:
                wave = next_release(s, campaign_id, utcnow())
            seen = Outcome(
                campaign_id=campaign_id,
                status=campaign.status,
                reason=campaign.pause_reason,
                sent=counts.get(DeliveryStatus.SENT, 0),
                failed=counts.get(DeliveryStatus.FAILED, 0),
                skipped=counts.get(DeliveryStatus.SKIPPED, 0),
                failed_rows=counts.get(DeliveryStatus.FAILED, 0),
                left=counts.get(DeliveryStatus.QUEUED, 0) + counts.get(DeliveryStatus.SENDING, 0),
                next_release=wave,
            )
        if on_progress is not None:
            on_progress(seen)
        live = seen.status in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING)
        if not live or wave is not None or sending_worker(sessions) is None:
            return seen
        sleep(poll)


@dataclass(frozen=True)
class StateChange:
    """An editor's change of a campaign; ``rows``: the readers it moved (cancel: skipped,
    retry-failed: queued again)."""

    campaign_id: int
    status: str
    rows: int = 0


def pause(sessions: sessionmaker[Session], campaign_id: int, reason: str) -> StateChange:
    """Workers stop after the batch in flight."""
    with sessions.begin() as s:
        return StateChange(campaign_id, lifecycle.pause(s, campaign_id, reason).status)


def resume(
    sessions: sessionmaker[Session], campaign_id: int, *, force: bool = False, ops: bool
) -> StateChange:
    """Paused -> sending, or scheduled again before its time; a sender then re-claims the
    queued rows and the rows of dead workers. A reputation-guard pause needs ``force`` from
    a caller with the ops role (``ops``, which every entrance must say), or ForbiddenError."""
    with sessions.begin() as s:
        resumed = lifecycle.resume(s, campaign_id, force=force, ops=ops)
        return StateChange(campaign_id, resumed.status)


def cancel(sessions: sessionmaker[Session], campaign_id: int) -> StateChange:
    """Cancelled: its queued readers are skipped, and the list may get the issue again."""
    with sessions.begin() as s:
        skipped = lifecycle.cancel(s, campaign_id)
    return StateChange(campaign_id, CampaignStatus.CANCELLED.value, skipped)


def retry_failed(sessions: sessionmaker[Session], campaign_id: int) -> StateChange:
    """The failed rows go back to the queue (a done campaign to sending)."""
    with sessions.begin() as s:
        queued = lifecycle.retry_failed(s, campaign_id)
        status = get_campaign(s, campaign_id).status
    return StateChange(campaign_id, status, queued)
