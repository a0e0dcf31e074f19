"""`mailer issue check|render`: what an editor runs before anything is sent (the use cases
are :func:`mailer.sending.publish.check` and :func:`~mailer.sending.publish.preview`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.context import app_context
from mailer.cli.declared import find_list, list_of
from mailer.issue.files import parse_issue_file
from mailer.sending import publish
from mailer.sending.publish import Checked

issue_app = typer.Typer(help="Issue files: check them, preview the email.", no_args_is_help=True)

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
    checked = publish.check(settings, issue, newsletter=newsletter, list_slug=list_of(file))
    for line in summary(checked):
        typer.echo(line)
    if strict and checked.warnings:
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
        publish.SAMPLE_TO
    ),
    archive_url: Annotated[
        str | None,
        typer.Option("--archive-url", help="This issue's web address (view in browser)."),
    ] = None,
) -> None:
    """Render an issue: DIR/email.html, email.txt (sample reader), message.eml, archive.html.

    A Markdown issue whose front matter names a 'list:' of the store is shown with that
    list's From and name (unless --from / --newsletter say otherwise).

    Example: mailer issue render issues/2025-03-03.txt --out preview/
    """
    actx = app_context(ctx)
    settings = actx.settings
    issue = parse_issue_file(file)
    slug = list_of(file)
    mlist, missing = find_list(actx, slug) if slug else (None, None)
    if missing:
        actx.err.print(f"note: list {slug}: {missing}; using the default From", markup=False)
    source = ctx.get_parameter_source("newsletter")
    newsletter_given = source is not None and source.name != "DEFAULT"
    shown = publish.preview(
        settings,
        issue,
        newsletter=newsletter if mlist is None or newsletter_given else mlist.name,
        list_slug=slug,
        from_address=from_address or (mlist.from_address if mlist else None),
        to=to,
        archive_url=archive_url,
    )
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "email.html": shown.html.encode("utf-8"),
        "email.txt": shown.text.encode("utf-8"),
        "message.eml": shown.eml,
        "archive.html": shown.archive_html.encode("utf-8"),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
        typer.echo(f"wrote {out / name} ({len(data) / 1024:.1f} KB)")
    for warning in shown.warnings:
        typer.echo(f"warning: {warning}")


def summary(checked: Checked) -> list[str]:
    """The lines `mailer issue check` prints."""
    issue = checked.issue
    lines = [
        f"subject:   {issue.subject} ({len(issue.subject)} chars)",
        f"preheader: {issue.preheader or '(none)'}",
        f"date:      {issue.date.isoformat() if issue.date else '(none)'}",
    ]
    if checked.list_slug:
        lines.append(f"list:      {checked.list_slug}")
    lines += [
        f"intro:     {len(issue.intro)} paragraph(s); closing: {len(issue.closing)} paragraph(s)",
        f"items:     {len(issue.items)}",
    ]
    for n, item in enumerate(issue.items, start=1):
        lines.append(f"  {n}. {item.title} — {item.source} ({len(item.paragraphs)} paragraph(s))")
        lines.append(f"     {item.url}")
    html_kb, text_kb = checked.html_bytes / 1024, checked.text_bytes / 1024
    lines.append(f"sizes:     HTML {html_kb:.1f} KB, text {text_kb:.1f} KB")
    lines.append(f"key:       {checked.key}")
    if checked.warnings:
        lines.append(f"warnings:  {len(checked.warnings)}")
        lines += [f"  - {w}" for w in checked.warnings]
    else:
        lines.append("warnings:  none")
    return lines
