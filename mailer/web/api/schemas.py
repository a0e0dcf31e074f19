"""The bodies of ``/api/v1`` as pydantic models: what FastAPI validates requests with and
what the OpenAPI document (and so schemathesis) promises of every answer. Handlers build
their answers through these models, so an answer cannot drift from its schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ISSUE_KEY = r"^[0-9a-f]{64}$"
SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"
MAX_ID = 2**31 - 1
MAX_TEST_ADDRESSES = 10


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    """An answer; a field named ``list`` in JSON is ``list_slug`` here (a field called
    ``list`` would hide the builtin from the annotations after it)."""

    model_config = ConfigDict(populate_by_name=True)


class Error(BaseModel):
    """Every error: ``error`` says what is wrong; some carry more (``line``, ``campaign``)."""

    model_config = ConfigDict(extra="allow")
    error: str
    line: int | None = None
    campaign: int | None = None


class PreviewLinks(Out):
    html: str
    text: str
    eml: str


class IssueOut(Out):
    key: str
    subject: str
    items: int
    warnings: list[str]
    preview: PreviewLinks
    list_slug: str | None = Field(
        None, alias="list", description="the list the file names (Markdown front matter)"
    )


class CampaignIn(Strict):
    issue: str = Field(pattern=ISSUE_KEY, description="the key of POST /api/v1/issues")
    list_slug: str = Field(alias="list", pattern=SLUG, description="the list's slug")
    at: str | None = Field(
        None, max_length=64, description="ISO-8601 start time (or +2h); null: now"
    )
    expires_after: str | None = Field(
        None, max_length=32, description="e.g. 6h: readers not sent by then are skipped"
    )
    test_to: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_TEST_ADDRESSES,
        description="send only to these addresses, subject [TEST]; nothing is stored",
    )
    dry_run: bool = False
    force: bool = Field(False, description="send an issue the list already has, again")
    subject: str | None = Field(
        None,
        max_length=1000,
        description="the subject for this send (one line, at most 250 characters once its "
        "spaces are tidied); null: the list's subject template, else the issue's own",
    )
    at_local: str | None = Field(
        None,
        max_length=64,
        description="HH:MM, 24-hour (as mailer send --at-local): each reader's row is "
        "released at that time in their zone (else the list's, else UTC), the first at or "
        "after `at` (or now); expires_after then counts from each wave; null: one send",
    )


class CampaignCreated(Out):
    id: int
    status: str
    recipients: int


class DryRunOut(Out):
    dry_run: Literal[True] = True
    list_slug: str = Field(alias="list")
    recipients: int
    subject: str
    html_bytes: int
    text_bytes: int


class TestResult(Out):
    to: str
    ok: bool
    message_id: str | None
    error: str | None


class TestOut(Out):
    list_slug: str = Field(alias="list")
    test: list[TestResult]


class StateCounts(Out):
    queued: int
    sending: int
    sent: int
    failed: int
    skipped: int


class CampaignStatsOut(Out):
    delivered: int
    hard_bounced: int
    soft_bounced: int
    complained: int
    unsubscribed: int
    opened: int | None
    clicked: int | None


class WaveOut(Out):
    release_at: str
    zones: list[str]
    counts: StateCounts


class CampaignOut(Out):
    id: int
    status: str
    list_slug: str = Field(alias="list")
    subject: str
    issue: str
    scheduled_at: str | None
    expires_at: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    counts: StateCounts
    total: int
    rate: float
    pause_reason: str | None
    stats: CampaignStatsOut
    at_local: str | None = Field(None, description="--at-local: each reader's local time")
    waves: list[WaveOut] = Field(
        default_factory=list, description="--at-local: release times (UTC), zones, counts"
    )


class CampaignsOut(Out):
    campaigns: list[CampaignOut]


class PauseIn(Strict):
    reason: str | None = Field(None, min_length=1, max_length=500)


class ResumeIn(Strict):
    force: bool = Field(False, description="resume after a reputation-guard pause")


class StateChangeOut(Out):
    id: int
    status: str
    rows: int = Field(description="readers moved: cancel skipped, retry-failed queued again")


class ListCounts(Out):
    active: int
    pending: int
    unsubscribed: int


class ListOut(Out):
    slug: str
    name: str
    double_opt_in: bool
    counts: ListCounts


class ListsOut(Out):
    lists: list[ListOut]


class SubscriberIn(Strict):
    email: str = Field(min_length=1, max_length=320)
    name: str | None = Field(None, max_length=200)
    confirmed: bool = Field(False, description="consent already given: active at once")


class SubscriberAdded(Out):
    email: str
    list_slug: str = Field(alias="list")
    status: Literal["pending", "active", "unsubscribed"]
    created: bool
    confirmation_mail: Literal["queued", "limited", "none"] = Field(
        description="queued: a confirmation mail goes out; limited: the per-address limit "
        "held it back; none: none was due"
    )


class Erased(Out):
    email: str
    erased: Literal[True] = True


AnyJson = dict[str, Any]
