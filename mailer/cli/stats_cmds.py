"""`mailer stats`: thin over mailer.ops.stats."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from mailer.cli.context import AppContext, app_context
from mailer.cli.links_report import show_links, show_list
from mailer.cli.safe_text import safe_cell
from mailer.cli.tables import Col, emit
from mailer.errors import InputError
from mailer.ops import stats as st

_LEVEL_STYLE = {
    st.Level.NA: "dim",
    st.Level.OK: "green",
    st.Level.WARN: "yellow",
    st.Level.CRITICAL: "bold red",
}


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _rate_cell(check: st.RateCheck) -> str:
    style = _LEVEL_STYLE[check.level]
    text = _pct(check.rate)
    if check.crossed:
        text += f" ({check.crossed[-1].source})"
    return f"[{style}]{text}[/{style}]"


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _counts_row(c: st.Counts) -> list[str]:
    bounce, complaint = c.checks
    return [
        str(c.sent),
        str(c.delivered),
        f"{c.hard_bounced}/{c.soft_bounced}",
        str(c.complained),
        str(c.failed),
        str(c.unsubscribed),
        _opt(c.opened),
        _opt(c.clicked),
        _rate_cell(bounce),
        _rate_cell(complaint),
    ]


_COUNT_COLUMNS = (
    "sent",
    "delivered",
    "bounced hard/soft",
    "complained",
    "failed",
    "unsub",
    "opened",
    "clicked",
    "bounce rate",
    "complaint rate",
)


def print_report(actx: AppContext, report: st.StatsReport) -> None:
    console = actx.console
    scope = f"campaign {report.campaign_id}" if report.campaign_id else f"last {report.days} days"
    if report.list_slug:
        scope += f", list {report.list_slug}"
    console.print(f"[bold]Delivery and reputation[/bold] — {scope}")
    t = report.totals
    bounce, complaint = t.checks
    console.print(
        f"sent {t.sent}  delivered {t.delivered}  bounced {t.bounced} "
        f"(hard {t.hard_bounced}, soft {t.soft_bounced})  complained {t.complained}  "
        f"rejected {t.rejected}  failed {t.failed}  unsubscribed {t.unsubscribed}  "
        f"opened {_opt(t.opened)}  clicked {_opt(t.clicked)}  queued {t.queued}",
        soft_wrap=False,  # wrapped at words to the terminal's width
    )
    console.print(
        f"bounce rate {_rate_cell(bounce)}   (SES reviews at 5%, pauses at 10%)\n"
        f"complaint rate {_rate_cell(complaint)}   "
        "(SES reviews at 0.1%, pauses at 0.5%; Gmail: under 0.1%, never 0.3%)",
        soft_wrap=False,
    )
    if report.unmatched_events:
        console.print(f"[dim]{report.unmatched_events} feedback events matched no delivery[/dim]")

    if report.campaigns:
        _figures(
            actx,
            "campaigns",
            ["id", "subject", "list", "state", "progress"],
            [
                (
                    [
                        str(c.id),
                        c.subject,
                        c.list_slug,
                        c.status + (f": {c.pause_reason}" if c.pause_reason else ""),
                        _pct(c.counts.progress, 0) + f" of {c.counts.total}",
                    ],
                    c.counts,
                )
                for c in report.campaigns
            ],
        )
    if report.domains:
        _figures(
            actx,
            "by recipient domain",
            ["domain"],
            [([d.domain], d.counts) for d in report.domains],
        )
    s = report.suppressions
    reasons = ", ".join(f"{k} {v}" for k, v in s.by_reason.items()) or "none"
    console.print(
        f"suppression list: {s.total} ({reasons}); "
        f"last {report.days} days: +{s.added} -{s.removed}",
        soft_wrap=False,
    )
    busy = [d for d in s.days if d.added or d.removed]
    if busy:
        table = Table("day", "added", "removed", "net", title="suppression growth")
        for day in busy:
            added = ", ".join(f"{k} {v}" for k, v in day.added.items()) or "0"
            table.add_row(day.day.isoformat(), added, str(day.removed), f"{day.net:+d}")
        console.print(table)


#: the width from which the campaigns and domains are one table each (15 columns); a
#: narrower terminal gets them stacked, one block of lines each, so no column is squeezed
WIDE = 170


def _figures(
    actx: AppContext, title: str, heads: list[str], rows: list[tuple[list[str], st.Counts]]
) -> None:
    """Rows of figures: tab-separated when piped, a table on a wide terminal, stacked blocks
    on a narrow one. ``heads`` name the leading text cells (stored text: never markup)."""
    if not actx.interactive:
        emit(
            actx,
            [Col(h) for h in heads] + [Col(h) for h in _COUNT_COLUMNS],
            [[*cells, *_plain_counts(counts)] for cells, counts in rows],
        )
        return
    if actx.console.width >= WIDE:
        table = Table(*heads, *_COUNT_COLUMNS, title=title)
        for cells, counts in rows:
            table.add_row(*(safe_cell(c) for c in cells), *_counts_row(counts))
        actx.console.print(table)
        return
    actx.console.print(f"[bold]{title}[/bold]")
    for cells, counts in rows:
        head = Text("  ").join(safe_cell(c) for c in cells[:1] + cells[2:])
        actx.console.print(head, soft_wrap=False)
        if len(cells) > 1:
            actx.console.print(Text("  ") + safe_cell(cells[1]), soft_wrap=False)
        shown = _counts_row(counts)
        figures = [f"{h} {v}" for h, v in zip(_COUNT_COLUMNS[:8], shown[:8], strict=True)]
        actx.console.print("  " + "  ".join(figures), highlight=False, soft_wrap=False)
        rates = shown[8:]
        actx.console.print(
            f"  bounce rate {rates[0]}  complaint rate {rates[1]}", highlight=False, soft_wrap=False
        )


def _plain_counts(c: st.Counts) -> list[str]:
    bounce, complaint = c.checks
    figures = [c.sent, c.delivered, f"{c.hard_bounced}/{c.soft_bounced}", c.complained]
    figures += [c.failed, c.unsubscribed, _opt(c.opened), _opt(c.clicked)]
    return [str(f) for f in figures] + [_pct(bounce.rate), _pct(complaint.rate)]


def stats_cmd(
    ctx: typer.Context,
    campaign: Annotated[
        int | None, typer.Option("--campaign", help="One campaign's figures, whatever its age.")
    ] = None,
    list_slug: Annotated[
        str | None, typer.Option("--list", help="Only campaigns of this list.")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="Window in days.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    links: Annotated[
        bool,
        typer.Option("--links", help="Clicks per link and opens, people and machines apart."),
    ] = False,
) -> None:
    """Delivery and reputation: sent, delivered, bounces, complaints, unsubscribes, rates
    against SES's and Gmail's thresholds, per campaign and per recipient domain, and the
    suppression list's growth.

    With --links and --campaign N: each link's human clicks, unique human clickers,
    machine and proxy clicks, and the opens; with --links and --list SLUG: the list's
    campaigns over --days, readers who opened and clicked (tracking: `mailer lists set
    SLUG --track`).

    Example: mailer stats --days 7 --list china-brief
    """
    actx = app_context(ctx)
    if links:
        if campaign is not None:
            show_links(actx, campaign, as_json=as_json)
        elif list_slug is not None:
            show_list(actx, list_slug, days, as_json=as_json)
        else:
            raise InputError("--links needs --campaign N (its links) or --list SLUG (over time)")
        return
    with actx.sessions() as session:
        report = st.collect(session, days=days, list_slug=list_slug, campaign_id=campaign)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    print_report(actx, report)
