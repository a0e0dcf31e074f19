"""`mailer issue check|render`: what an editor runs before anything is sent."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from mailer.cli.app import app
from mailer.cli.context import app_context
from mailer.config import Settings
from mailer.issue.files import decode_issue_bytes, parse_issue_file
from mailer.issue.markdown import declared_list
from mailer.issue.model import Issue
from mailer.render.compiler import Branding, RenderedIssue, render_issue

issue_app = typer.Typer(help="Issue files: check them, preview the email.", no_args_is_help=True)
app.add_typer(issue_app, name="issue")

DEFAULT_NEWSLETTER = "The China Brief"
NewsletterOpt = Annotated[
    str, typer.Option("--newsletter", help="Newsletter name shown in the masthead and footer.")
]
FileArg = Annotated[
    Path, typer.Argument(help="Issue file: brief text or Markdown with front matter.")
]


@issue_app.command("check")
def check(
    ctx: typer.Context,
    file: FileArg,
    newsletter: NewsletterOpt = DEFAULT_NEWSLETTER,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when there are warnings.")
    ] = False,
) -> None:
    """Parse and validate an issue file; print a summary (subject, items, sizes, warnings).

    A file that does not parse is an error naming the line (exit 1); nothing is rendered.

    Example: mailer issue check issues/2025-03-03.txt
    """
    settings = app_context(ctx).settings
    issue = parse_issue_file(file)
    rendered = render_issue(issue, Branding.from_settings(settings, newsletter))
    for line in summary(issue, rendered, list_slug=_list_of(file)):
        typer.echo(line)
    if strict and rendered.warnings:
        raise typer.Exit(1)


@issue_app.command("render")
def render(
    ctx: typer.Context,
    file: FileArg,
    out: Annotated[Path, typer.Option("--out", help="Directory for the preview files.")],
    newsletter: NewsletterOpt = DEFAULT_NEWSLETTER,
    from_address: Annotated[
        str | None,
        typer.Option("--from", help='From header (default: "<newsletter> <news@host>").'),
    ] = None,
    to: Annotated[str, typer.Option("--to", help="To address of the sample message.")] = (
        "reader@example.com"
    ),
    archive_url: Annotated[
        str | None,
        typer.Option("--archive-url", help="This issue's web address (view in browser)."),
    ] = None,
) -> None:
    """Render an issue: DIR/email.html, email.txt (sample reader), message.eml, archive.html.

    Example: mailer issue render issues/2025-03-03.txt --out preview/
    """
    settings = app_context(ctx).settings
    issue = parse_issue_file(file)
    branding = Branding.from_settings(settings, newsletter, archive_url=archive_url)
    rendered = render_issue(issue, branding)
    values = sample_values(settings)
    html, text = rendered.personalize(values)
    sender = from_address or f"{newsletter} <news@{urlsplit(settings.public_base).hostname}>"
    eml = preview_message(
        rendered,
        values,
        from_address=sender,
        to=to,
        list_name=newsletter,
        list_slug=_list_of(file) or "newsletter",
    )
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "email.html": html.encode("utf-8"),
        "email.txt": text.encode("utf-8"),
        "message.eml": eml,
        "archive.html": rendered.for_archive().encode("utf-8"),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
        typer.echo(f"wrote {out / name} ({len(data) / 1024:.1f} KB)")
    for warning in rendered.warnings:
        typer.echo(f"warning: {warning}")


def summary(issue: Issue, rendered: RenderedIssue, *, list_slug: str | None) -> list[str]:
    """The lines `mailer issue check` prints."""
    html_kb = len(rendered.html.encode("utf-8")) / 1024
    text_kb = len(rendered.text.encode("utf-8")) / 1024
    lines = [
        f"subject:   {issue.subject} ({len(issue.subject)} chars)",
        f"preheader: {issue.preheader or '(none)'}",
        f"date:      {issue.date.isoformat() if issue.date else '(none)'}",
    ]
    if list_slug:
        lines.append(f"list:      {list_slug}")
    lines += [
        f"intro:     {len(issue.intro)} paragraph(s); closing: {len(issue.closing)} paragraph(s)",
        f"items:     {len(issue.items)}",
    ]
    for n, item in enumerate(issue.items, start=1):
        lines.append(f"  {n}. {item.title} — {item.source} ({len(item.paragraphs)} paragraph(s))")
        lines.append(f"     {item.url}")
    lines.append(f"sizes:     HTML {html_kb:.1f} KB, text {text_kb:.1f} KB")
    lines.append(f"key:       {issue.key()}")
    if rendered.warnings:
        lines.append(f"warnings:  {len(rendered.warnings)}")
        lines += [f"  - {w}" for w in rendered.warnings]
    else:
        lines.append("warnings:  none")
    return lines


def sample_values(settings: Settings) -> dict[str, str]:
    """Reader fields for previews: clearly fake tokens under the real base URL."""
    base = settings.public_base
    return {
        "unsubscribe_url": f"{base}/unsubscribe/SAMPLE-TOKEN",
        "preferences_url": f"{base}/preferences/SAMPLE-TOKEN",
        "name": "Sample Reader",
    }


def preview_message(
    rendered: RenderedIssue,
    values: dict[str, str],
    *,
    from_address: str,
    to: str,
    list_name: str,
    list_slug: str,
) -> bytes:
    """A complete sample message, built the way the delivery engine builds real ones.

    Uses ``mailer.render.message.build_preview_message`` (the delivery engine's MIME builder); only
    where that module is absent does it fall back to the standard library.
    """
    try:
        from mailer.render.message import build_preview_message
    except ImportError:
        return _stdlib_message(rendered, values, from_address=from_address, to=to)
    return build_preview_message(
        rendered,
        from_address=from_address,
        to=to,
        unsubscribe_url=values["unsubscribe_url"],
        preferences_url=values["preferences_url"],
        list_name=list_name,
        list_slug=list_slug,
        name=values["name"],
    )


def _stdlib_message(
    rendered: RenderedIssue, values: dict[str, str], *, from_address: str, to: str
) -> bytes:
    html, text = rendered.personalize(values)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = from_address
    msg["To"] = to
    msg["Subject"] = rendered.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2].strip(">") or None)
    msg["List-Unsubscribe"] = f"<{values['unsubscribe_url']}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return bytes(msg)


def _list_of(file: Path) -> str | None:
    """The ``list:`` of a Markdown issue (already parsed once, so this cannot fail anew)."""
    text = decode_issue_bytes(file.read_bytes(), source=str(file))
    return declared_list(text, source=str(file))
