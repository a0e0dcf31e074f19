"""`mailer lists`: thin wrappers over subscribers.store and, for `lists set` and
`lists show SLUG`, subscribers.list_settings (which checks every value and names the field
it refuses, the same for every entrance).

Whatever came from the store (names, addresses) is printed through mailer.cli.safe_text,
never raw and never as markup.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.context import app_context
from mailer.cli.safe_text import safe_text
from mailer.cli.tables import Col, emit
from mailer.errors import InputError
from subscribers import list_settings, store
from subscribers.tracking import parse_track, set_tracking, tracking_of

lists_app = typer.Typer(help="Mailing lists.", no_args_is_help=True)


@lists_app.command("create")
def lists_create(
    ctx: typer.Context,
    slug: str,
    name: Annotated[str, typer.Option("--name", help="Display name of the list.")],
    from_address: Annotated[str, typer.Option("--from", help='From header: "Name <addr>".')],
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", help="Reply-To header: where replies go.")
    ] = None,
    double_opt_in: Annotated[
        bool, typer.Option("--double-opt-in/--no-double-opt-in", help="Require confirmation.")
    ] = True,
) -> None:
    """Create a mailing list.

    Example: mailer lists create china-brief --name "The China Brief" --from "Brief <b@example.org>"
    """
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        mlist = store.create_list(
            session,
            slug,
            name=name,
            from_address=from_address,
            reply_to=reply_to,
            double_opt_in=double_opt_in,
        )
        actx.console.print(
            f"created list {safe_text(mlist.slug)} ({safe_text(mlist.name)}) "
            f"from {safe_text(mlist.from_address)}",
            markup=False,
        )


@lists_app.command("show")
def lists_show(
    ctx: typer.Context,
    slug: Annotated[
        str | None, typer.Argument(help="One list: show its settings.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (every list).")] = False,
) -> None:
    """Show every list with its subscriber counts, or one list's settings.

    Example: mailer lists show china-brief
    """
    if slug is not None:
        show_settings(ctx, slug)
        return
    actx = app_context(ctx)
    with actx.sessions() as session:
        rows = store.list_counts(session)
    emit(
        actx,
        [
            Col("slug", keep=True),  # what every other command takes: never cut
            Col("name"),
            Col("from"),
            Col("lang"),
            Col("double opt-in"),
            Col("active", numeric=True),
            Col("pending", numeric=True),
            Col("unsubscribed", numeric=True),
        ],
        [
            (
                m.slug,
                m.name,
                m.from_address,
                m.lang,
                "yes" if m.double_opt_in else "no",
                counts.get("active", 0),
                counts.get("pending", 0),
                counts.get("unsubscribed", 0),
            )
            for m, counts in rows
        ],
        as_json=as_json,
    )


def show_settings(ctx: typer.Context, slug: str) -> None:
    """Print one list's settings, one ``key: value`` line each."""
    actx = app_context(ctx)
    with actx.sessions() as session:
        mlist = store.get_list(session, slug)
        shown = {
            **list_settings.describe(mlist),
            "track": tracking_of(session, mlist.id).describe(),
        }
    for key, value in shown.items():
        actx.console.print(f"{key}: {safe_text(value)}", markup=False, highlight=False)


def _optional(value: str | None) -> str | list_settings.Clear | None:
    """'' on the command line removes an optional setting."""
    if value is None:
        return None
    return list_settings.CLEAR if value == "" else value


def _read_welcome(path: Path) -> str:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as err:
        raise InputError(f"welcome: cannot read {path}: {err.strerror or err}") from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"welcome: {path} is not UTF-8 text (byte {err.start})") from err


@lists_app.command("set")
def lists_set(
    ctx: typer.Context,
    slug: str,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    from_address: Annotated[
        str | None, typer.Option("--from", help='From header: "Name <addr>".')
    ] = None,
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", help="Reply-To address ('' removes it).")
    ] = None,
    logo: Annotated[
        str | None, typer.Option("--logo", help="https URL of the logo ('' removes it).")
    ] = None,
    accent: Annotated[
        str | None, typer.Option("--accent", help="Accent colour, #rrggbb ('' removes it).")
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option("--lang", help=f"Language: {', '.join(list_settings.LANGUAGES)}."),
    ] = None,
    greeting: Annotated[
        str | None,
        typer.Option("--greeting", help="Opens each mail before the name ('' for none)."),
    ] = None,
    welcome: Annotated[
        Path | None,
        typer.Option("--welcome", help="Markdown file of the welcome mail ('-': stdin)."),
    ] = None,
    no_welcome: Annotated[bool, typer.Option("--no-welcome", help="Send no welcome mail.")] = False,
    subject_template: Annotated[
        str | None,
        typer.Option(
            "--subject-template", help="e.g. '{newsletter}: {first_headline}' ('' removes it)."
        ),
    ] = None,
    time_zone: Annotated[
        str | None,
        typer.Option("--time-zone", help="IANA zone for readers without one ('' for UTC)."),
    ] = None,
    track: Annotated[
        str | None,
        typer.Option("--track", help="Track clicks, opens, 'clicks,opens' or 'off' (default)."),
    ] = None,
) -> None:
    """Change a list's settings: sender, branding, language, greeting, welcome mail,
    subject template, default time zone, click and open tracking (--track). Every value is
    checked before any is stored.

    Example: mailer lists set china-brief --lang zh-Hans --accent '#b3261e' --welcome welcome.md
    """
    if welcome is not None and no_welcome:
        raise InputError("welcome: give --welcome FILE or --no-welcome, not both")
    welcome_text: str | list_settings.Clear | None = None
    if welcome is not None:
        welcome_text = _read_welcome(welcome)
    elif no_welcome:
        welcome_text = list_settings.CLEAR
    changes = list_settings.ListChanges(
        name=name,
        from_address=from_address,
        reply_to=_optional(reply_to),
        logo_url=_optional(logo),
        accent_color=_optional(accent),
        lang=lang,
        greeting=greeting,
        welcome_markdown=welcome_text,
        subject_template=_optional(subject_template),
        time_zone=_optional(time_zone),
    )
    tracking = parse_track(track) if track is not None else None
    actx = app_context(ctx)
    with actx.sessions.begin() as session:
        mlist = store.get_list(session, slug)
        changed: list[str] = []
        if tracking is None or not changes.empty():  # --track alone is a change too
            changed = [
                list_settings.OPTION[c] for c in list_settings.update_list(session, mlist, changes)
            ]
        if tracking is not None and set_tracking(session, mlist.id, tracking):
            changed.append("--track")
    what = ", ".join(changed) if changed else "nothing"
    actx.console.print(f"{safe_text(slug)}: changed {what}", markup=False, highlight=False)
