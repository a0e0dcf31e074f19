"""Test-send, then send now or schedule, through a confirmation step.

    POST /desk/issues/{key}/test      the real issue to a few addresses ([TEST], ledger
                                      untouched): :func:`mailer.sending.publish.send_test`
    POST /desk/issues/{key}/confirm   read list, time, expiry; show the list and the number
                                      of readers (:func:`~mailer.sending.publish.dry_run`)
    POST /desk/issues/{key}/send      :func:`~mailer.sending.publish.create`; 303 to the
                                      campaign, which ``mailer worker`` sends

The confirmation form's token is bound to the session *and* to exactly what the page
showed (list, start, expiry, force, subject, local time), so what is sent is what was
confirmed. It is also the form's idempotency key (:mod:`mailer.access.idempotency`, the
API's own): the same confirmation posted twice (a double click, a reload, a replay) makes
one campaign and answers with it.

The subject field follows the CLI's ``--subject`` rule
(:func:`mailer.render.subject.clean_subject`); left empty, the list's subject template
(its result is the field's placeholder) or else the issue's own subject is used. The local
time field is ``mailer send --at-local`` (:func:`mailer.sending.schedule.parse_at_local`):
each reader's row waits for that time in their zone, and "stop sending after" then counts
from each wave.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailer.access import idempotency
from mailer.access.idempotency import Answer
from mailer.access.tokens import still_valid
from mailer.errors import ConflictError, InputError, InvalidAddressError, TransportError
from mailer.render.subject import clean_subject
from mailer.sending import publish
from mailer.sending.schedule import Schedule, Wording, parse_at_local, parse_span
from mailer.web.common import list_by_slug
from mailer.web.desk import handed
from mailer.web.desk.context import NO_STORE, Desk, Signed
from mailer.web.forms import Form, read_form
from mailer.web.ratelimit import TEST_SENDS_LIMIT
from subscribers.addresses import normalize_email
from subscribers.models import MailingList

#: "a few addresses": a test send is not a way around the ledger
MAX_TEST_ADDRESSES = 5
#: the schedule's refusals in the desk's words (the rule is sending.schedule's, for every entrance)
DESK_WORDING = Wording(
    at="", expires_after="stop sending after", send_now="Choose a later time, or send now."
)
IDEMPOTENCY_PREFIX = "desk-confirm:"
#: how a refusal of the local time field names it
AT_LOCAL_WORDING = "local time"
#: what the confirmation page posts back, bound by its token (after the issue's key)
CONFIRMED_FIELDS = ("list", "at", "expires_at", "force", "subject", "at_local", "wave_expiry")


def send_forms(
    desk: Desk, signed: Signed, stored: handed.Stored, mlist: MailingList
) -> dict[str, Any]:
    """The tokens of the check page's two forms."""
    key = stored.key
    return {
        "test_token": desk.form_token(signed, f"/desk/issues/{key}/test"),
        "confirm_token": desk.form_token(signed, f"/desk/issues/{key}/confirm"),
        "default_zone": mlist.time_zone or "UTC",
    }


#: IssueRoutes.issue_context: the check page's context, the stored issue and the list
IssueContext = Callable[
    [Signed, str, str | None], tuple[dict[str, Any], handed.Stored, MailingList]
]


class SendRoutes:
    def __init__(self, desk: Desk, issue_context: IssueContext) -> None:
        self.desk = desk
        self.issue_context = issue_context

    async def _signed_form(self, request: Request, path: str) -> tuple[Signed | None, Form]:
        signed = self.desk.who(request)
        if signed is None:
            return None, Form(())
        form = await read_form(request)
        self.desk.check_form(signed, form.get("csrf_token"), path)
        return signed, form

    # -- test send ---------------------------------------------------------------------

    async def test_send(self, request: Request, key: str) -> Response:
        signed, form = await self._signed_form(request, f"/desk/issues/{key}/test")
        if signed is None:
            return self.desk.to_sign_in(request)
        context, stored, mlist = self.issue_context(signed, key, _chosen_list(form))
        raw = form.get("addresses")
        context["addresses"] = raw
        context["test_subject"] = form.get("subject")
        try:
            addresses = _test_addresses(raw)
            subject = _subject(form.get("subject"))  # the send's rule: what a test shows
        except InputError as err:
            context["test_error"] = str(err)
            return self.desk.page("issue.html", context, signed=signed, status=422)
        # WebState's, shared with the API's test sends
        wait = self.desk.state.test_send_limiter.hit(
            signed.principal.name, self.desk.state.timestamp()
        )
        if wait is not None:
            minutes = max(1, math.ceil(wait / 60))
            context["test_error"] = (
                f"This token has sent {TEST_SENDS_LIMIT} tests within the hour; "
                f"the next one can go in {minutes} min."
            )
            response = self.desk.page("issue.html", context, signed=signed, status=429)
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        rendered = context["checked"].rendered  # render_for's, as the check page showed it
        if subject is not None:  # the subject the editor means to send with
            rendered = publish.render_for(
                self.desk.state.settings, mlist, stored.issue, subject=subject
            )
        with self.desk.state.sessions() as session:  # revoked while it rendered: none goes
            if not still_valid(session, signed.principal):
                return self.desk.to_sign_in(request)
        try:
            context["test_results"] = publish.send_test(
                self.desk.state.settings, self.desk.state.transport(), mlist, rendered, addresses
            )
        except TransportError as err:  # the relay is down or refuses us: say so, on the page
            context["test_error"] = f"The test could not be sent: {err}"
            return self.desk.page("issue.html", context, signed=signed, status=503)
        return self.desk.page("issue.html", context, signed=signed)

    # -- confirm -----------------------------------------------------------------------

    async def confirm(self, request: Request, key: str) -> Response:
        signed, form = await self._signed_form(request, f"/desk/issues/{key}/confirm")
        if signed is None:
            return self.desk.to_sign_in(request)
        context, stored, mlist = self.issue_context(signed, key, _chosen_list(form))
        for name in ("when", "at", "zone", "expires_after", "force", "subject", "at_local"):
            context[f"form_{name}"] = form.get(name)
        try:
            schedule = self._schedule(form)
            subject = _subject(form.get("subject"))
        except InputError as err:
            context["send_error"] = str(err)
            return self.desk.page("issue.html", context, signed=signed, status=422)
        rendered = context["checked"].rendered
        if subject is not None:  # rendered again: the subject's warnings are the new one's
            rendered = publish.render_for(
                self.desk.state.settings, mlist, stored.issue, subject=subject
            )
        counted = publish.dry_run(self.desk.state.sessions, mlist, rendered)
        fields = _confirmed_fields(key, mlist.slug, schedule, subject)
        path = f"/desk/issues/{key}/send"
        return self.desk.page(
            "confirm.html",
            {
                "title": "Confirm",
                "active": "new",
                "issue": stored.issue,
                "key": key,
                "mlist": mlist,
                "counted": counted,
                "schedule": schedule,
                "fields": fields,
                "wave_span": form.get("expires_after").strip(),
                "csrf_token": self.desk.form_token(signed, path, _bound(fields)),
            },
            signed=signed,
        )

    def _schedule(self, form: Form) -> Schedule:
        """Start (now, or a local date and time in a named zone), expiry, force, and the
        readers' local time (waves), read as ``Schedule.parse`` reads the CLI's options."""
        now = self.desk.state.now()
        force = form.get("force") == "1"
        start: datetime | None = None
        if form.get("when") == "at":
            start = _local_time(form.get("at"), form.get("zone"))
        text = form.get("expires_after").strip()
        span = parse_span(DESK_WORDING.expires_after, text) if text else None
        local = form.get("at_local").strip()
        at_local = parse_at_local(local, AT_LOCAL_WORDING) if local else None
        checked = Schedule.checked(start, span, force=force, now=now, wording=DESK_WORDING)
        return checked if at_local is None else checked.in_waves(at_local, span)

    # -- send --------------------------------------------------------------------------

    async def send(self, request: Request, key: str) -> Response:
        signed = self.desk.who(request)
        if signed is None:
            return self.desk.to_sign_in(request)
        form = await read_form(request)
        fields = {name: form.get(name) for name in CONFIRMED_FIELDS}
        token = form.get("csrf_token")
        bound = _bound({"key": key, **fields})
        self.desk.check_form(signed, token, f"/desk/issues/{key}/send", bound)
        schedule = Schedule(
            at=_iso_or_none(fields["at"]),
            expires_at=_iso_or_none(fields["expires_at"]),
            force=fields["force"] == "1",
            at_local=fields["at_local"] or None,
            wave_expiry=_seconds_or_none(fields["wave_expiry"]),
        )
        stored = handed.load(self.desk.state.sessions, key)
        with self.desk.state.sessions() as s:
            mlist = list_by_slug(s, fields["list"])
            s.expunge(mlist)
        subject = _subject(fields["subject"])
        try:
            return self._create_once(signed, token, bound, stored, mlist, schedule, subject)
        except RevokedMeanwhile:  # the sign-in page (401): nothing was done
            return self.desk.to_sign_in(request)
        except ConflictError as err:  # already sent or scheduled: back to the issue, saying so
            context, _, _ = self.issue_context(signed, key, mlist.slug)
            context["send_error"] = str(err).replace(
                "pass --force to send it again", 'tick "Send again" to send it once more'
            )
            return self.desk.page("issue.html", context, signed=signed, status=409)

    def _create_once(
        self,
        signed: Signed,
        token: str,
        bound: str,
        stored: handed.Stored,
        mlist: MailingList,
        schedule: Schedule,
        subject: str | None,
    ) -> Response:
        """Create the campaign unless this confirmation made one already; the answer is
        kept in the campaign's own transaction, so a replay racing the first post finds
        either the campaign or nothing, never half of it."""
        state = self.desk.state
        who = signed.principal.name
        idem_key = IDEMPOTENCY_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()
        earlier = self._answer(who, idem_key)
        if earlier is not None:
            return _to_campaign(earlier, again=True)
        fingerprint = hashlib.sha256(bound.encode("utf-8")).hexdigest()

        def record(session: Session, created: publish.Created) -> None:
            if not still_valid(session, signed.principal):  # revoked while it rendered
                raise RevokedMeanwhile(signed.principal.name)
            body = {"campaign_id": created.campaign_id}
            answer = Answer(201, body, fingerprint)
            idempotency.record_answer(session, who, idem_key, answer, now=state.now())

        rendered = publish.render_for(state.settings, mlist, stored.issue, subject=subject)
        try:
            created = publish.create(
                state.sessions, mlist, stored.issue, rendered, schedule, record=record
            )
        except (IntegrityError, ConflictError):
            winner = self._answer(who, idem_key)  # a replay of this form got in first
            if winner is None:
                raise
            return _to_campaign(winner, again=True)
        return _to_campaign(created.campaign_id, again=False)

    def _answer(self, who: str, idem_key: str) -> int | None:
        with self.desk.state.sessions() as s:
            found = idempotency.find_answer(s, who, idem_key)
        campaign_id = found.body.get("campaign_id") if found is not None else None
        return campaign_id if isinstance(campaign_id, int) else None


class RevokedMeanwhile(Exception):
    """The editor's token was revoked between the door and the campaign's transaction."""


def _chosen_list(form: Form) -> str:
    """The list the form names: never a default, a test or a send goes where it says."""
    slug = form.get("list").strip()
    if not slug:
        raise InputError("the form names no list: start again from the issue's page")
    return slug


def _to_campaign(campaign_id: int, *, again: bool) -> Response:
    target = f"/desk/campaigns/{campaign_id}" + ("?again=1" if again else "")
    return RedirectResponse(target, status_code=303, headers=NO_STORE)


def _test_addresses(raw: str) -> list[str]:
    """Addresses separated by commas, spaces or lines; each checked, at most a few."""
    found = [a for a in raw.replace(",", " ").split() if a]
    if not found:
        raise InputError("enter at least one address to send the test to")
    if len(found) > MAX_TEST_ADDRESSES:
        raise InputError(f"a test goes to at most {MAX_TEST_ADDRESSES} addresses")
    out = []
    for address in found:
        try:
            out.append(normalize_email(address))
        except InvalidAddressError as err:
            raise InputError(f"{address[:80]!r} is not an address we can send to: {err}") from err
    return list(dict.fromkeys(out))


def _local_time(at: str, zone: str) -> datetime:
    """``2026-12-04T06:00`` (a datetime-local field) in the IANA ``zone`` -> UTC."""
    try:
        tz = ZoneInfo(zone.strip() or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InputError(
            f"unknown time zone {zone[:64]!r} (use e.g. UTC or Asia/Shanghai)"
        ) from err
    try:
        local = datetime.fromisoformat(at.strip())
    except ValueError as err:
        raise InputError(
            f"cannot read the start time {at[:40]!r}: use the date and time field"
        ) from err
    if local.tzinfo is None:
        local = local.replace(tzinfo=tz)
    try:
        return local.astimezone(UTC)
    except OverflowError as err:  # 9999-12-31T23:59 west of Greenwich
        raise InputError(f"the start time {at[:40]!r} is out of range") from err


def _subject(raw: str) -> str | None:
    """The editor's subject for this send, by the CLI's rule; None when left empty."""
    return clean_subject(raw, what="subject") if raw.strip() else None


def _confirmed_fields(
    key: str, slug: str, schedule: Schedule, subject: str | None
) -> dict[str, str]:
    return {
        "key": key,
        "list": slug,
        "at": schedule.at.isoformat() if schedule.at else "",
        "expires_at": schedule.expires_at.isoformat() if schedule.expires_at else "",
        "force": "1" if schedule.force else "",
        "subject": subject or "",
        "at_local": schedule.at_local or "",
        "wave_expiry": str(schedule.wave_expiry.total_seconds()) if schedule.wave_expiry else "",
    }


def _bound(fields: dict[str, str]) -> str:
    """What the confirmation token is bound to, in one fixed order."""
    return "\x00".join(fields.get(name, "") for name in ("key", *CONFIRMED_FIELDS))


def _iso_or_none(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as err:  # the token binds these fields: only a forged form gets here
        raise InputError("the confirmation form was changed; start again") from err


def _seconds_or_none(text: str) -> timedelta | None:
    """A wave expiry as the confirmation bound it (seconds); the token binds it too."""
    if not text:
        return None
    try:
        return timedelta(seconds=float(text))
    except (ValueError, OverflowError) as err:
        raise InputError("the confirmation form was changed; start again") from err
