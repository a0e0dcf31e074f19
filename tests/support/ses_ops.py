"""What the SES test server does for each operation (sending, account, suppression list)."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from email.utils import getaddresses
from typing import Any

from tests.support.ses_content import (
    ADDRESS,
    TemplateCache,
    addresses,
    bare_address,
    decode_prefix,
    json_object,
    missing_variables,
    raw_headers,
    template_parts,
)
from tests.support.ses_model import Route
from tests.support.ses_state import ApiError, SentMessage, ServerConfig, ServerState


class Operations:
    """The SES behaviour behind each route."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._templates = TemplateCache()
        self.table: dict[str, Callable[..., tuple[int, Any]]] = {
            "SendEmail": self.send_email,
            "SendBulkEmail": self.send_bulk_email,
            "GetAccount": self.get_account,
            "GetEmailIdentity": self.get_email_identity,
            "GetConfigurationSet": self.get_configuration_set,
            "GetConfigurationSetEventDestinations": self.get_event_destinations,
            "ListSuppressedDestinations": self.list_suppressed,
            "PutSuppressedDestination": self.put_suppressed,
            "DeleteSuppressedDestination": self.delete_suppressed,
        }

    def call(
        self,
        route: Route,
        body: dict[str, Any],
        params: dict[str, str],
        query: dict[str, Any],
        headers: Any,
    ) -> tuple[int, Any]:
        state = self.state
        cfg = state.config
        op = route.operation
        try:
            self._auth(cfg, headers)
            self._delay(cfg)
            forced = state.pop_failure(op)
            if forced is not None:
                raise forced
            status, payload = self.table[op](cfg, body=body, params=params, query=query)
        except ApiError as err:
            with state.lock:
                state.calls[(op, err.code)] += 1
            raise
        with state.lock:
            state.calls[(op, "ok")] += 1
        return status, payload

    # -- gates ---------------------------------------------------------------------------

    @staticmethod
    def _auth(cfg: ServerConfig, headers: Any) -> None:
        if cfg.access_keys is None:
            return
        auth = headers.get("Authorization", "")
        m = re.search(r"Credential=([^/,\s]+)/", auth)
        if not m or m.group(1) not in cfg.access_keys:
            raise ApiError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )

    def _delay(self, cfg: ServerConfig) -> None:
        delay = cfg.latency
        if cfg.spike_probability and self.state.rng.random() < cfg.spike_probability:
            delay += cfg.spike_latency
        if delay > 0:
            time.sleep(delay)

    def _send_gates(self, cfg: ServerConfig, count: int, config_set: str | None) -> None:
        rng = self.state.rng
        if cfg.account_suspended:
            raise ApiError(
                "AccountSuspendedException",
                "Your account has been suspended and can no longer send email.",
            )
        if cfg.sending_paused:
            raise ApiError("SendingPausedException", "Sending is paused for this account.")
        if cfg.throttle_probability and rng.random() < cfg.throttle_probability:
            raise ApiError("TooManyRequestsException", "Maximum sending rate exceeded.")
        if cfg.error_probability and rng.random() < cfg.error_probability:
            raise ApiError("InternalFailure", "Internal service error (injected).", 500)
        if cfg.enforce_rate and not self.state.take_rate_token(cfg, count):
            raise ApiError("TooManyRequestsException", "Maximum sending rate exceeded.")
        if (
            config_set
            and cfg.configuration_sets is not None
            and config_set not in cfg.configuration_sets
        ):
            raise ApiError("NotFoundException", f"Configuration set <{config_set}> does not exist.")
        if cfg.mail_from_unverified:
            raise ApiError(
                "MailFromDomainNotVerifiedException",
                "The MAIL FROM domain of the sending identity is not verified.",
            )

    def _quota_left(self, cfg: ServerConfig) -> float:
        if not cfg.enforce_quota:
            return float("inf")
        return cfg.max_24h - self.state.sent_last_24h(time.time())

    def _check_sender(self, cfg: ServerConfig, sender: str | None) -> None:
        if sender is None:
            raise ApiError("BadRequestException", "No From address: set FromEmailAddress.")
        addr = bare_address(sender)
        if not ADDRESS.fullmatch(addr):
            raise ApiError("BadRequestException", f"Illegal From address: {sender}")
        if cfg.identities is None:
            return
        domain = addr.rsplit("@", 1)[-1]
        for name in (addr, domain):
            ident = cfg.identities.get(name)
            if ident is not None and ident.get("VerifiedForSendingStatus", True):
                return
        raise ApiError(
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in "
            f"region US-EAST-1: {addr}",
        )

    def _recipient_problem(self, cfg: ServerConfig, address: str) -> ApiError | None:
        addr = bare_address(address)
        if not ADDRESS.fullmatch(addr):
            return ApiError("BadRequestException", f"Illegal address: {address}")
        if (
            addr in cfg.reject_addresses
            or (cfg.reject_pattern and re.search(cfg.reject_pattern, addr))
            or (cfg.reject is not None and cfg.reject(addr))
        ):
            return ApiError("MessageRejected", f"Address blacklisted: {addr}")
        return None

    def _maybe_fail_after_accept(self, cfg: ServerConfig) -> None:
        p = cfg.error_after_accept_probability
        if p and self.state.rng.random() < p:
            raise ApiError("InternalFailure", "Internal service error (after accept).", 500)

    def _record(self, make: Callable[[int, str, float], SentMessage], count: int) -> list[str]:
        state = self.state
        now = time.time()
        ids: list[str] = []
        with state.lock:
            for _ in range(count):
                seq = next(state.seq)
                msg_id = state.new_id(seq)
                message = make(seq, msg_id, now)
                if state.suppressed and any(
                    bare_address(a) in state.suppressed for a in message.recipients
                ):
                    message = dataclasses.replace(message, suppressed=True)
                state.messages.append(message)
                state.sent_times.append(now)
                ids.append(msg_id)
        return ids

    # -- sending -------------------------------------------------------------------------

    def send_email(self, cfg: ServerConfig, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        content = body["Content"]
        kinds = [k for k in ("Raw", "Simple", "Template") if k in content]
        if len(kinds) != 1:
            raise ApiError(
                "BadRequestException", "Content needs exactly one of Raw, Simple or Template."
            )
        config_set = body.get("ConfigurationSetName")
        self._send_gates(cfg, 1, config_set)
        dest = body.get("Destination") or {}
        to = addresses(dest.get("ToAddresses"))
        cc = addresses(dest.get("CcAddresses"))
        bcc = addresses(dest.get("BccAddresses"))
        sender = body.get("FromEmailAddress")
        raw_base64: str | None = None
        subject = html = text = None
        template_data: dict[str, Any] | None = None
        headers: tuple[tuple[str, str], ...] = ()
        kind = kinds[0]
        if kind == "Raw":
            raw_base64 = content["Raw"]["Data"]
            if not raw_base64:
                raise ApiError("MessageRejected", "Raw message is empty.")
            if not (to or cc or bcc) or sender is None:
                found = raw_headers(decode_prefix(raw_base64), ("From", "To", "Cc"))
                if sender is None:
                    senders = found.get("from")
                    sender = senders[0] if senders else None
                if not (to or cc or bcc):
                    to = tuple(a for _, a in getaddresses(found.get("to", [])) if a)
                    cc = tuple(a for _, a in getaddresses(found.get("cc", [])) if a)
        elif kind == "Simple":
            simple = content["Simple"]
            subject = simple["Subject"]["Data"]
            html = (simple["Body"].get("Html") or {}).get("Data")
            text = (simple["Body"].get("Text") or {}).get("Data")
            headers = tuple((h["Name"], h["Value"]) for h in simple.get("Headers", []))
        else:
            tpl = content["Template"]
            parts = template_parts(tpl)
            subject, html, text = parts
            template_data = json_object(tpl.get("TemplateData") or "{}", "TemplateData")
            headers = tuple((h["Name"], h["Value"]) for h in tpl.get("Headers", []))
        if not (to or cc or bcc):
            raise ApiError("BadRequestException", "No recipients: Destination is empty.")
        if len(to) + len(cc) + len(bcc) > 50:
            raise ApiError("MessageRejected", "Recipient count exceeds 50.")
        self._check_sender(cfg, sender)
        for address in to + cc + bcc:
            problem = self._recipient_problem(cfg, address)
            if problem is not None:
                raise problem
        if self._quota_left(cfg) < 1:
            raise ApiError("LimitExceededException", "Daily message quota exceeded.")
        tags = {t["Name"]: t["Value"] for t in body.get("EmailTags", [])}
        missing = missing_variables(kind, (subject, html, text), template_data)

        def make(seq: int, msg_id: str, now: float) -> SentMessage:
            return SentMessage(
                seq=seq,
                message_id=msg_id,
                operation="SendEmail",
                kind=kind.lower(),
                from_address=sender,
                to=to,
                cc=cc,
                bcc=bcc,
                raw_base64=raw_base64 if cfg.keep_raw else None,
                subject=subject,
                html=html,
                text=text,
                template_data=template_data,
                headers=headers,
                tags=tags,
                configuration_set=config_set,
                time=now,
                missing_variables=missing,
            )

        [msg_id] = self._record(make, 1)
        self._maybe_fail_after_accept(cfg)
        return 200, {"MessageId": msg_id}

    def send_bulk_email(
        self, cfg: ServerConfig, *, body: dict[str, Any], **_: Any
    ) -> tuple[int, Any]:
        entries = body["BulkEmailEntries"]
        if not entries:
            raise ApiError("BadRequestException", "BulkEmailEntries is empty.")
        if len(entries) > 50:
            raise ApiError("BadRequestException", "BulkEmailEntries takes at most 50 entries.")
        tpl = body["DefaultContent"].get("Template")
        if tpl is None:
            raise ApiError("BadRequestException", "DefaultContent.Template is required.")
        config_set = body.get("ConfigurationSetName")
        self._send_gates(cfg, len(entries), config_set)
        (subject, html, text), names = self._templates.get(*template_parts(tpl))
        sender = body.get("FromEmailAddress")
        self._check_sender(cfg, sender)
        default_data = json_object(tpl.get("TemplateData") or "{}", "TemplateData")
        default_headers = [(h["Name"], h["Value"]) for h in tpl.get("Headers", [])]
        default_tags = {t["Name"]: t["Value"] for t in body.get("DefaultEmailTags", [])}
        quota = self._quota_left(cfg)
        results: list[dict[str, Any] | None] = []
        accepted: list[tuple[int, dict[str, Any]]] = []
        for index, entry in enumerate(entries):
            dest = entry["Destination"]
            to = addresses(dest.get("ToAddresses"))
            cc = addresses(dest.get("CcAddresses"))
            bcc = addresses(dest.get("BccAddresses"))
            problem: ApiError | None = None
            if not (to or cc or bcc):
                problem = ApiError("BadRequestException", "Destination is empty.")
            for address in to + cc + bcc:
                problem = problem or self._recipient_problem(cfg, address)
            replacement = (
                (entry.get("ReplacementEmailContent") or {})
                .get("ReplacementTemplate", {})
                .get("ReplacementTemplateData")
            )
            data = dict(default_data)
            if problem is None and replacement is not None:
                try:
                    data.update(json_object(replacement, "ReplacementTemplateData"))
                except ApiError as err:
                    problem = err
            if problem is not None:
                status = (
                    "MESSAGE_REJECTED"
                    if problem.code == "MessageRejected"
                    else ("INVALID_PARAMETER")
                )
                results.append({"Status": status, "Error": problem.message})
                continue
            if quota < 1:
                results.append(
                    {"Status": "ACCOUNT_DAILY_QUOTA_EXCEEDED", "Error": "Daily quota exceeded."}
                )
                continue
            quota -= 1
            merged = dict(default_headers)
            merged.update((h["Name"], h["Value"]) for h in entry.get("ReplacementHeaders", []))
            tags = dict(default_tags)
            tags.update((t["Name"], t["Value"]) for t in entry.get("ReplacementTags", []))
            fields = {
                "operation": "SendBulkEmail",
                "kind": "template",
                "from_address": sender,
                "to": to,
                "cc": cc,
                "bcc": bcc,
                "subject": subject,
                "html": html,
                "text": text,
                "template_data": data,
                "headers": tuple(merged.items()),
                "tags": tags,
                "configuration_set": config_set,
                "missing_variables": tuple(sorted(n for n in names if n not in data)),
            }
            results.append(None)
            accepted.append((index, fields))
        if accepted:
            queue = iter(accepted)

            def make(seq: int, msg_id: str, now: float) -> SentMessage:
                return SentMessage(seq=seq, message_id=msg_id, time=now, **next(queue)[1])

            ids = self._record(make, len(accepted))
            for (index, _sent), msg_id in zip(accepted, ids, strict=True):
                results[index] = {"Status": "SUCCESS", "MessageId": msg_id}
            self._maybe_fail_after_accept(cfg)
        return 200, {"BulkEmailEntryResults": results}

    # -- account and provisioning --------------------------------------------------------

    def get_account(self, cfg: ServerConfig, **_: Any) -> tuple[int, Any]:
        return 200, {
            "SendQuota": {
                "Max24HourSend": cfg.max_24h,
                "MaxSendRate": cfg.max_send_rate,
                "SentLast24Hours": self.state.sent_last_24h(time.time()),
            },
            "SendingEnabled": not cfg.sending_paused,
            "ProductionAccessEnabled": True,
            "EnforcementStatus": "SHUTDOWN" if cfg.account_suspended else "HEALTHY",
            "DedicatedIpAutoWarmupEnabled": False,
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
        }

    def get_email_identity(self, cfg: ServerConfig, *, params: dict[str, str], **_: Any) -> Any:
        name = params["EmailIdentity"]
        key = name.lower()
        overrides: Mapping[str, Any] = {}
        if cfg.identities is not None:
            if key not in cfg.identities:
                raise ApiError("NotFoundException", f"Email identity {name} does not exist.")
            overrides = cfg.identities[key]
        is_email = "@" in name
        domain = name.rsplit("@", 1)[-1]
        answer: dict[str, Any] = {
            "IdentityType": "EMAIL_ADDRESS" if is_email else "DOMAIN",
            "FeedbackForwardingStatus": True,
            "VerifiedForSendingStatus": True,
            "VerificationStatus": "SUCCESS",
            "DkimAttributes": {
                "SigningEnabled": True,
                "Status": "SUCCESS",
                "Tokens": [f"tok{i}{abs(hash(domain)) % 10**8}" for i in range(3)],
                "SigningAttributesOrigin": "AWS_SES",
            },
            "MailFromAttributes": {
                "MailFromDomain": f"mail.{domain}",
                "MailFromDomainStatus": "SUCCESS",
                "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
            },
            "Policies": {},
            "Tags": [],
        }
        answer.update(overrides)
        return 200, answer

    def _config_set(self, cfg: ServerConfig, name: str) -> Sequence[Mapping[str, Any]]:
        if cfg.configuration_sets is None:
            return []
        if name not in cfg.configuration_sets:
            raise ApiError("NotFoundException", f"Configuration set <{name}> does not exist.")
        return cfg.configuration_sets[name]

    def get_configuration_set(
        self, cfg: ServerConfig, *, params: dict[str, str], **_: Any
    ) -> tuple[int, Any]:
        name = params["ConfigurationSetName"]
        self._config_set(cfg, name)
        return 200, {
            "ConfigurationSetName": name,
            "SendingOptions": {"SendingEnabled": not cfg.sending_paused},
            "ReputationOptions": {"ReputationMetricsEnabled": True},
            "DeliveryOptions": {"TlsPolicy": "OPTIONAL"},
            "SuppressionOptions": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
            "Tags": [],
        }

    def get_event_destinations(
        self, cfg: ServerConfig, *, params: dict[str, str], **_: Any
    ) -> tuple[int, Any]:
        destinations = self._config_set(cfg, params["ConfigurationSetName"])
        return 200, {"EventDestinations": [dict(d) for d in destinations]}

    # -- suppression list ----------------------------------------------------------------

    def put_suppressed(self, cfg: ServerConfig, *, body: dict[str, Any], **_: Any) -> Any:
        address = body["EmailAddress"]
        with self.state.lock:
            self.state.suppressed[bare_address(address)] = (address, body["Reason"], time.time())
        return 200, {}

    def delete_suppressed(self, cfg: ServerConfig, *, params: dict[str, str], **_: Any) -> Any:
        address = params["EmailAddress"]
        with self.state.lock:
            if self.state.suppressed.pop(bare_address(address), None) is None:
                raise ApiError(
                    "NotFoundException", f"Email address {address} is not on the suppression list."
                )
        return 200, {}

    def list_suppressed(self, cfg: ServerConfig, *, query: dict[str, Any], **_: Any) -> Any:
        reasons = set(query.get("Reasons") or ["BOUNCE", "COMPLAINT"])
        start: datetime | None = query.get("StartDate")
        end: datetime | None = query.get("EndDate")
        size = int(query.get("PageSize") or 1000)
        if not 1 <= size <= 1000:
            raise ApiError("BadRequestException", "PageSize must be between 1 and 1000.")
        token = query.get("NextToken")
        offset = 0
        if token:
            if not str(token).isdigit():
                raise ApiError("InvalidNextTokenException", "The NextToken is not valid.")
            offset = int(token)
        with self.state.lock:
            rows = sorted(self.state.suppressed.values(), key=lambda r: (r[2], r[0]))
        picked = [
            r
            for r in rows
            if r[1] in reasons
            and (start is None or r[2] >= start.timestamp())
            and (end is None or r[2] <= end.timestamp())
        ]
        page = picked[offset : offset + size]
        answer: dict[str, Any] = {
            "SuppressedDestinationSummaries": [
                {"EmailAddress": a, "Reason": reason, "LastUpdateTime": t} for a, reason, t in page
            ]
        }
        if offset + size < len(picked):
            answer["NextToken"] = str(offset + size)
        return 200, answer
