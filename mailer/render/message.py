"""MIME messages, built once per campaign and spliced per reader.

The rendered issue's HTML and text still hold per-reader placeholders. ``MessageTemplate``
encodes everything that is the same for every reader exactly once — the static headers,
and each part's static chunks quoted-printable encoded — and per reader only encodes the
few field values and joins bytes (docs/architecture.md principle 1: the per-reader path never runs
MJML, premailer or ``EmailMessage`` over the body).

Splicing works because quoted-printable allows a soft line break (``=\\r\\n``) anywhere:
each static chunk and each value is encoded on its own and they are joined with soft breaks,
which decode to nothing. Every line stays under 78 octets, and the result parses with the
``email`` package to exactly the text and HTML of ``RenderedIssue.personalize``.

Headers a reader could influence (the address) are checked for CR/LF; display names and
subjects go through ``email.policy`` so non-ASCII is RFC 2047 encoded.
"""

from __future__ import annotations

import binascii
import html as htmllib
import itertools
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, parseaddr

from mailer.errors import RenderError
from mailer.render.placeholders import GREETING_FIELD, greeting_line, split_template

CRLF = b"\r\n"
SOFT = b"=\r\n"
ONE_CLICK = "List-Unsubscribe=One-Click"
#: what no header value may hold (see _safe_header)
_HEADER_BREAKERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
PART_HEAD = (
    b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
)


@dataclass(frozen=True, slots=True)
class CampaignMessage:
    """What is the same for every reader of a campaign: what the renderer hands the
    Transport seam (``mailer.transports.base``) besides each reader's message.

    ``html`` and ``text`` still hold the per-reader placeholders (see ``mailer.render.compiler``);
    transports that personalize server-side (SES bulk) translate them to their own syntax.
    ``headers`` are the static headers (From, Reply-To, List-Id, Feedback-ID ...)."""

    campaign_id: int
    subject: str
    from_address: str
    html: str
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)
    reply_to: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def qp(data: str) -> bytes:
    """Quoted-printable encode text (UTF-8) with CRLF line ends and <= 76-octet lines."""
    encoded = binascii.b2a_qp(data.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return encoded.replace(b"\n", CRLF)


def _safe_header(name: str, value: str) -> str:
    """``value`` unless it holds a C0/C1 control character (tab, CR, LF, NUL, ESC, DEL,
    NEL...) or a Unicode line or paragraph separator, which mail software may take as a
    line break: then an error naming the header and the character. Per reader (To,
    List-Unsubscribe), so the common case is one ``isprintable`` call."""
    if value.isprintable():
        return value
    bad = _HEADER_BREAKERS.search(value)
    if bad is not None:
        ch = bad.group()
        raise RenderError(
            f"{name}: header value contains a control character or line break "
            f"({ch!r}, U+{ord(ch):04X})"
        )
    return value


@dataclass(frozen=True, slots=True)
class _Part:
    """One text part: encoded static chunks with the field names between them."""

    chunks: tuple[bytes, ...]
    names: tuple[str, ...]
    escape: Callable[[str], str]

    @classmethod
    def build(
        cls,
        template: str,
        split: Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]],
        escape: Callable[[str], str],
    ) -> _Part:
        chunks, names = split(template)
        return cls(tuple(qp(c) for c in chunks), names, escape)

    def fill(self, values: Mapping[str, str]) -> bytes:
        out = [self.chunks[0]]
        encoded: dict[str, bytes] = {}  # a field in many places (tracked links) is encoded once
        for name, chunk in zip(self.names, self.chunks[1:], strict=True):
            value = encoded.get(name)
            if value is None:
                value = encoded[name] = qp(self.escape(values.get(name, "")))
            out.append(SOFT)
            if value:
                out.append(value)
                out.append(SOFT)
            out.append(chunk)
        return b"".join(out)


def _html_escape(value: str) -> str:
    return htmllib.escape(value, quote=True)


def _plain(value: str) -> str:
    return value


def sending_domain(from_address: str) -> str:
    _, addr = parseaddr(from_address)
    return addr.rpartition("@")[2] or "localhost"


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """A campaign's message with holes for the reader: see the module docstring."""

    head: bytes  # static headers, CRLF-terminated, without the blank line
    text: _Part
    html: _Part
    boundary: str
    domain: str
    campaign: CampaignMessage
    greeting: str = "Hello"  # the list's; the greeting line is made per reader from it
    # a Message-ID's unique part: random once per template, then a count (os.urandom per
    # message was ~5 us of the per-reader path, a syscall each, with the GIL held)
    _salt: str = field(default_factory=lambda: secrets.token_hex(6), repr=False, compare=False)
    _serial: Iterator[int] = field(default_factory=itertools.count, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        *,
        campaign_id: int,
        subject: str,
        from_address: str,
        html: str,
        text: str,
        list_name: str,
        list_slug: str,
        reply_to: str | None = None,
        split: Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
        feedback_sender: str = "briefmailer",
        tags: Mapping[str, str] | None = None,
        greeting: str = "Hello",
    ) -> MessageTemplate:
        """Encode everything that does not depend on the reader (once per campaign).
        ``greeting`` is the list's (``Branding.greeting``, '' for none): with a reader's
        name it makes the ``%%greeting%%`` line (:meth:`with_greeting`)."""
        if split is None:
            split = split_template
        domain = sending_domain(from_address)
        boundary = "=_brief_" + secrets.token_hex(12)
        static = EmailMessage(policy=SMTP)
        static["From"] = _safe_header("From", from_address)
        if reply_to:
            static["Reply-To"] = _safe_header("Reply-To", reply_to)
        static["Subject"] = _safe_header("Subject", subject)
        static["MIME-Version"] = "1.0"
        static["List-Id"] = formataddr(
            (
                _safe_header("List name", list_name),
                _safe_header("List slug", f"{list_slug}.{domain}"),
            )
        )
        static["Feedback-ID"] = f"{campaign_id}:{list_slug}:newsletter:{feedback_sender}"
        static["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
        head = bytes(static).split(CRLF + CRLF, 1)[0] + CRLF  # headers only
        headers = {
            "List-Id": str(static["List-Id"]),
            "Feedback-ID": str(static["Feedback-ID"]),
        }
        campaign = CampaignMessage(
            campaign_id=campaign_id,
            subject=subject,
            from_address=from_address,
            html=html,
            text=text,
            headers=headers,
            reply_to=reply_to,
            tags=dict(tags or {"campaign": str(campaign_id)}),
        )
        return cls(
            head=head,
            text=_Part.build(text, split, _plain),
            html=_Part.build(html, split, _html_escape),
            boundary=boundary,
            domain=domain,
            campaign=campaign,
            greeting=greeting,
        )

    def with_greeting(self, fields: Mapping[str, str]) -> Mapping[str, str]:
        """``fields`` with the reader's greeting line, unless it is there already."""
        if GREETING_FIELD in fields:
            return fields
        return {**fields, GREETING_FIELD: greeting_line(self.greeting, fields.get("name", ""))}

    def message_id(self, delivery_id: int) -> str:
        unique = f"{self._salt}{next(self._serial):x}"
        return f"<{self.campaign.campaign_id}.{delivery_id}.{unique}@{self.domain}>"

    @staticmethod
    def reader_headers(to: str, unsubscribe_url: str, message_id: str) -> dict[str, str]:
        """Per-reader headers (also what SES bulk sends as ReplacementHeaders)."""
        return {
            "To": _safe_header("To", to),
            "Message-ID": message_id,
            "List-Unsubscribe": f"<{_safe_header('List-Unsubscribe', unsubscribe_url)}>",
            "List-Unsubscribe-Post": ONE_CLICK,
        }

    def render(
        self,
        *,
        to: str,
        fields: Mapping[str, str],
        headers: Mapping[str, str],
        date: str | None = None,
    ) -> bytes:
        """The complete message for one reader (CRLF line ends), from prepared headers."""
        b = self.boundary.encode()
        fields = self.with_greeting(fields)
        head = [self.head]
        for name, value in headers.items():
            # not folded: some receivers keep the fold's space in List-Unsubscribe's URL;
            # these lines stay far below the 998-octet limit
            head.append(f"{name}: {value}".encode() + CRLF)
        head.append(b"Date: " + (date or formatdate(usegmt=True)).encode() + CRLF)
        part = PART_HEAD
        return b"".join(
            [
                *head,
                CRLF,
                b"--" + b + CRLF,
                part % b"plain",
                self.text.fill(fields),
                CRLF + b"--" + b + CRLF,
                part % b"html",
                self.html.fill(fields),
                CRLF + b"--" + b + b"--" + CRLF,
            ]
        )


def build_preview_message(
    rendered: object,
    *,
    from_address: str,
    to: str,
    unsubscribe_url: str,
    preferences_url: str,
    list_name: str = "Newsletter",
    list_slug: str = "newsletter",
    name: str = "",
) -> bytes:
    """A complete sample message for `mailer issue render` and previews."""
    subject = str(getattr(rendered, "subject"))  # noqa: B009  (duck-typed RenderedIssue)
    template = MessageTemplate.build(
        campaign_id=0,
        subject=subject,
        from_address=from_address,
        html=str(getattr(rendered, "html")),  # noqa: B009
        text=str(getattr(rendered, "text")),  # noqa: B009
        list_name=list_name,
        list_slug=list_slug,
        greeting=str(getattr(rendered, "greeting", "")),
    )
    fields = {"unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url, "name": name}
    headers = template.reader_headers(to, unsubscribe_url, template.message_id(0))
    return template.render(to=to, fields=fields, headers=headers)
