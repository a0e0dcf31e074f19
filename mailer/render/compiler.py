"""Issue -> email: HTML (Jinja2 -> MJML -> mjml-python -> premailer) and plain text.

Compile once, personalize cheaply (docs/architecture.md principle 1). :func:`render_issue`
runs the whole pipeline once per issue and returns a :class:`RenderedIssue` whose ``html`` and
``text`` still hold one placeholder per reader field (``FIELDS``). Per reader, only the
placeholders are filled (:meth:`RenderedIssue.personalize`, or :func:`split_template` for
callers that splice the values themselves): no Jinja, MJML or premailer on the hot path.

Placeholders are ``%%field%%`` (e.g. ``%%unsubscribe_url%%``): plain ASCII that Jinja,
mjml-python and premailer all pass through untouched, in text and in ``href`` attributes.
Content cannot forge one: the pipeline runs with random, unguessable stand-ins, every
``%%field%%`` sequence found in the output afterwards came from the issue's content and is
neutralised (``&#37;`` in HTML, a word joiner in text), and only then are the stand-ins
swapped for the real placeholders; a count check guards the swap.

The web edition (:meth:`RenderedIssue.for_archive`) is rendered from the same template
in archive mode: the issue's title as its heading, no greeting, no reader links, none of
the mail-only lines ("View in browser", "Forwarded this?", a "Reply to this email"
sentence of the intro or closing), a Subscribe and a Past issues link.

The greeting line is one placeholder (``%%greeting%%``) holding the whole line, filled per
reader from the name (:func:`~mailer.render.placeholders.greeting_line`): "Hello Ann," for
a reader with a name, nothing at all for one without, with no second render.

The placeholder syntax lives in :mod:`mailer.render.placeholders`, the plain-text filling in
:mod:`mailer.render.text`, :class:`Branding` in :mod:`mailer.render.branding` and the editor's
warnings in :mod:`mailer.render.warnings`; the names other layers use are re-exported here
(``__all__``).
"""

from __future__ import annotations

import dataclasses
import functools
import html as htmlmod
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jinja2
from mjml import mjml2html

from mailer.errors import RenderError
from mailer.issue.model import Issue
from mailer.render import i18n
from mailer.render.branding import DEFAULT_ACCENT, Branding
from mailer.render.colours import readable_on
from mailer.render.links import item_anchor, item_href
from mailer.render.placeholders import (
    FIELDS,
    GREETING_FIELD,
    PLACEHOLDER_RE,
    SAMPLE_VALUES,
    clean_field,
    greeting_line,
    placeholder,
    splice,
    split_template,
)
from mailer.render.text import LINE_MAX_OCTETS, hang, limit_line_octets, wrap_text
from mailer.render.warnings import GMAIL_CLIP_BYTES, SUBJECT_MAX, editor_warnings
from mailer.templates import search_path

__all__ = [
    "CARD",
    "DARK_CARD",
    "DEFAULT_ACCENT",
    "FIELDS",
    "GMAIL_CLIP_BYTES",
    "LINE_MAX_OCTETS",
    "SUBJECT_MAX",
    "Branding",
    "RenderedIssue",
    "clean_field",
    "compile_email",
    "placeholder",
    "render_issue",
    "render_text_template",
    "split_template",
    "wrap_text",
]

FONTS = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_MONTHS = (
    *("January", "February", "March", "April", "May", "June", "July"),
    *("August", "September", "October", "November", "December"),
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_RTL = {"ar", "fa", "he", "ur", "yi", "ps", "sd", "ug", "dv"}
CARD = "#ffffff"
DARK_CARD = "#1e1e1e"
# A sentence that only makes sense in a mailbox: left out of the web edition.
#: sentences that speak to a mailbox, in the languages the issue email ships in (en, zh-Hans):
#: "Reply to this email", "Forwarded this?", "You are receiving this"; "回复此邮件",
#: "转发…邮件", "您收到此邮件" (Chinese has no word boundaries: no \b there)
_MAIL_ONLY = re.compile(
    r"\b(?:reply to (?:this|our) (?:e-?mail|message|newsletter)|forwarded this"
    r"|(?:you are|you're) receiving this)\b"
    r"|回复(?:此|本|这封)(?:电子)?(?:邮件|信)"
    r"|转发(?:给您|给你)?的?(?:此|本|这封)?(?:电子)?邮件|(?:此|本|这封)(?:电子)?邮件(?:是|由)?.{0,6}转发"
    r"|(?:您|你)(?:之所以)?(?:会)?收到(?:此|本|这封)(?:电子)?(?:邮件|信)",
    re.IGNORECASE,
)
#: one sentence with the spacing after it: Latin full stops end one before blanks, Chinese
#: ones (。！？) with or without them
_SENTENCE = re.compile(r".*?(?:[.!?](?=\s|$)|[。！？]|$)\s*", re.DOTALL)


@dataclass(frozen=True)
class RenderedIssue:
    """An issue rendered once: bodies with per-reader placeholders, and editor warnings."""

    subject: str
    preheader: str
    html: str
    text: str
    warnings: tuple[str, ...] = ()
    archive_html: str = field(default="", repr=False)
    greeting: str = ""  # the word before the name; the line is filled per reader

    @cached_property
    def _html_parts(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return split_template(self.html)

    @cached_property
    def _text_parts(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return split_template(self.text)

    def personalize(self, values: Mapping[str, str]) -> tuple[str, str]:
        """(html, text) for one reader: values HTML-escaped in the HTML, plain in the text.

        ``unsubscribe_url`` and ``preferences_url`` are required, ``name`` may be missing
        or empty; ``greeting`` (the whole line) is made from the name unless given. Line
        breaks and control characters in values become spaces; the HTML stays ASCII
        (non-ASCII values become character references).
        """
        plain: dict[str, str] = {}
        escaped: dict[str, str] = {}
        for name in FIELDS:
            value = values.get(name)
            if value is None:
                if name == GREETING_FIELD:
                    value = greeting_line(self.greeting, plain["name"])
                elif name == "name":
                    value = ""
                else:
                    raise RenderError(f"personalize: no value for {name!r}")
            if not value.isprintable():
                value = clean_field(value)
            plain[name] = value
            value = htmlmod.escape(value, quote=True)
            escaped[name] = value if value.isascii() else ascii_html(value)
        html_chunks, html_names = self._html_parts
        text_chunks, text_names = self._text_parts
        return (
            splice(html_chunks, html_names, escaped),
            splice(text_chunks, text_names, plain),
        )

    def for_archive(self) -> str:
        """The web edition: the same issue with no reader's personal links."""
        if not self.archive_html:
            raise RenderError("this rendered issue carries no web edition (archive_html)")
        return self.archive_html

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe snapshot for a campaign row; :meth:`from_dict` restores it."""
        return {
            "subject": self.subject,
            "preheader": self.preheader,
            "html": self.html,
            "text": self.text,
            "warnings": list(self.warnings),
            "archive_html": self.archive_html,
            "greeting": self.greeting,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RenderedIssue:
        try:
            return cls(
                subject=str(d["subject"]),
                preheader=str(d["preheader"]),
                html=str(d["html"]),
                text=str(d["text"]),
                warnings=tuple(str(w) for w in d.get("warnings", ())),
                archive_html=str(d.get("archive_html", "")),
                greeting=str(d.get("greeting", "")),
            )
        except (KeyError, TypeError) as err:
            raise RenderError(f"rendered issue snapshot is incomplete: {err}") from err


def render_issue(issue: Issue, branding: Branding, *, subject: str | None = None) -> RenderedIssue:
    """Render an issue once: email HTML and text with placeholders, the web edition, warnings.

    ``subject`` is the one chosen for this send (:func:`mailer.render.subject.choose_subject`);
    without it the issue's own."""
    nonce = secrets.token_hex(8)
    stand_ins = {name: f"mailerph{nonce}{name.replace('_', '')}" for name in FIELDS}
    html, text, split_urls = render_bodies(issue, branding, stand_ins)
    html = ascii_html(_swap_stand_ins(html, stand_ins, html=True))
    text = _swap_stand_ins(text, stand_ins, html=False)
    context = {
        **_issue_context(issue, branding),
        "archive": True,
        "ph": {},
        "intro": web_paragraphs(issue.intro),
        "closing": web_paragraphs(issue.closing),
    }
    archive_html = compile_email("issue.mjml.j2", context, template_dir=branding.template_dir)
    archive = ascii_html(neutralise(archive_html, html=True))
    rendered = RenderedIssue(
        subject=issue.subject if subject is None else subject,
        preheader=issue.preheader,
        html=html,
        text=text,
        archive_html=archive,
        greeting=branding.greeting,
    )
    sample_html, _ = rendered.personalize(SAMPLE_VALUES)
    warnings = editor_warnings(
        issue,
        branding,
        subject=rendered.subject,
        html_bytes=len(sample_html.encode("utf-8")),
        split_urls=split_urls,
    )
    return dataclasses.replace(rendered, warnings=tuple(warnings))


def render_bodies(
    issue: Issue, branding: Branding, fields: Mapping[str, str]
) -> tuple[str, str, int]:
    """The whole pipeline for the email with ``fields`` written in as they are.

    :func:`render_issue` passes stand-ins for the placeholders; passing one reader's values
    is what rendering per reader would cost (scripts/bench_render.py's baseline). Returns
    (html, text, number of text lines that had to be cut at 998 octets).
    """
    ph = dict(fields)
    if GREETING_FIELD not in ph:  # one reader's values: their greeting line from the name
        ph[GREETING_FIELD] = greeting_line(branding.greeting, ph.get("name", ""))
    context = {**_issue_context(issue, branding), "archive": False, "ph": ph}
    html = compile_email("issue.mjml.j2", context, template_dir=branding.template_dir)
    text = render_text_template("issue.txt.j2", context, template_dir=branding.template_dir)
    text, split_urls = limit_line_octets(text)
    return html, text, split_urls


# -- the pipeline (reusable by other emails, e.g. the confirmation mail) -----------------


def compile_email(template: str, context: Mapping[str, Any], *, template_dir: str = "") -> str:
    """Jinja2 (autoescape, StrictUndefined) -> MJML -> HTML -> CSS inlined, with a doctype.

    ``template`` names a file in templates/email/ (usually extending base.mjml.j2, whose
    context keys are listed at its top); ``template_dir`` is MAILER_TEMPLATE_DIR, looked in
    first (:func:`mailer.templates.search_path`).
    """
    # Imported here: premailer (with cssutils and lxml) costs 75 ms or more to import
    # (-X importtime after `import mailer.cli`), which every `mailer` command would pay at
    # start-up; only a render needs it.
    from premailer import Premailer

    try:
        mjml_src = _jinja(template_dir).get_template(template).render(**_base_context(context))
    except jinja2.TemplateError as err:
        raise RenderError(f"{template}: {err}") from err
    try:
        compiled = mjml2html(mjml_src, disable_comments=True, fonts={})
    except Exception as err:  # the MJML engine raises bare exceptions
        raise RenderError(f"{template}: MJML did not compile: {err}") from err
    try:
        inlined = Premailer(
            compiled,
            base_url=None,
            disable_link_rewrites=True,
            allow_network=False,
            allow_loading_external_files=False,
            keep_style_tags=False,
            remove_classes=False,
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()
    except Exception as err:  # premailer/cssutils/lxml raise many kinds
        raise RenderError(f"{template}: CSS inlining failed: {err}") from err
    return "<!doctype html>\n" + str(inlined)


def render_text_template(
    template: str, context: Mapping[str, Any], *, template_dir: str = ""
) -> str:
    """A plain-text template (``*.txt.j2``, no autoescape) with tidy blank lines."""
    try:
        raw = _jinja(template_dir).get_template(template).render(**_base_context(context))
    except jinja2.TemplateError as err:
        raise RenderError(f"{template}: {err}") from err
    lines = [line.rstrip() for line in raw.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return text + "\n"


@functools.lru_cache(maxsize=4)
def _jinja(template_dir: str) -> jinja2.Environment:
    """One environment per MAILER_TEMPLATE_DIR (compiled templates are cached inside)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search_path("email", template_dir)),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("mjml.j2", "html.j2", "mjml", "html"),
            disabled_extensions=("txt.j2", "txt"),
            default=True,
            default_for_string=True,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap_text
    env.filters["hang"] = hang
    env.globals["item_href"] = item_href
    env.globals["item_anchor"] = item_anchor
    return env


def _base_context(context: Mapping[str, Any]) -> dict[str, Any]:
    lang = context.get("lang", "en")
    defaults = {
        "lang": lang,
        "dir": "rtl" if str(lang).split("-")[0].lower() in _RTL else "ltr",
        "fonts": FONTS,
        "preheader": "",
        "date_label": "",
        "logo_url": "",
        **accent_colours(DEFAULT_ACCENT),
    }
    return {**defaults, **context}


def _issue_context(issue: Issue, b: Branding) -> dict[str, Any]:
    """The issue template's context in the list's language: the fixed words are translated
    here, once per list and issue, so personalizing a reader stays a join."""
    return {
        **i18n.template_context(b.lang),
        "lang": b.lang,
        "title": issue.subject,
        "preheader": issue.preheader,
        "newsletter_name": b.newsletter_name,
        "date_label": date_label(issue.date, b.lang) if issue.date else "",
        "greeting": b.greeting,
        "logo_url": b.logo_url,
        **accent_colours(b.accent_color),
        "intro": issue.intro,
        "items": issue.items,
        "closing": issue.closing,
        "reason_text": b.reason_text,
        "view_url": b.archive_url or "",
        "subscribe_url": b.subscribe_url,
        "archive_index_url": b.archive_index_url,
        "address_lines": [ln.strip() for ln in b.postal_address.splitlines() if ln.strip()],
    }


def accent_colours(accent: str) -> dict[str, str]:
    """The accent as the templates use it: the band as chosen, text readable on each card."""
    return {
        "accent": accent,
        "accent_text": readable_on(accent, CARD),
        "accent_dark": readable_on(accent, DARK_CARD),
    }


def web_paragraphs(paragraphs: tuple[str, ...]) -> tuple[str, ...]:
    """Paragraphs for the web edition: sentences that speak to a mailbox ("Reply to this
    email", "Forwarded this?") are left out, and a paragraph left empty goes with them."""
    out = []
    for para in paragraphs:
        if not _MAIL_ONLY.search(para):
            out.append(para)
            continue
        sentences = (m.group(0) for m in _SENTENCE.finditer(para) if m.group(0))
        kept = "".join(s for s in sentences if not _MAIL_ONLY.search(s)).strip()
        if kept:
            out.append(kept)
    return tuple(out)


def date_label(d: Any, lang: str = "en") -> str:
    """'Monday, March 3, 2025' in English, Babel's full date in another language
    ('2025年3月3日星期一'), whatever the machine's locale."""
    if i18n.supported(lang) == "en":
        return f"{_WEEKDAYS[d.weekday()]}, {_MONTHS[d.month - 1]} {d.day}, {d.year}"
    from babel.dates import format_date

    return format_date(d, "full", locale=i18n.locale_name(i18n.supported(lang)))


def ascii_html(markup: str) -> str:
    """Non-ASCII as character references: the same document, in plain ASCII.

    Safe here because our styles, scripts and comments are ASCII (content only reaches text
    and attribute values, where references are decoded). It makes the per-reader join a
    plain byte copy, and is no larger than quoted-printable UTF-8 on the wire.
    """
    if markup.isascii():
        return markup
    return markup.encode("ascii", "xmlcharrefreplace").decode("ascii")


def neutralise(body: str, *, html: bool) -> str:
    """Break every ``%%field%%`` in body (``&#37;`` in HTML, a word joiner in text).

    Repeated until none is left: breaking one can complete another that shared its '%%'.
    """
    breaker = "&#37;" if html else "%\u2060"
    while PLACEHOLDER_RE.search(body):
        body = PLACEHOLDER_RE.sub(lambda m: breaker + m.group(0)[1:], body)
    return body


def _swap_stand_ins(body: str, stand_ins: Mapping[str, str], *, html: bool) -> str:
    """Neutralise placeholders that came from content, then put the real ones in."""
    body = neutralise(body, html=html)
    expected = 0
    for name, stand_in in stand_ins.items():
        expected += body.count(stand_in)
        body = body.replace(stand_in, placeholder(name))
    found = len(PLACEHOLDER_RE.findall(body))
    if found != expected:
        raise RenderError(
            f"placeholder check failed: {found} placeholders after rendering, {expected} expected"
        )
    return body
