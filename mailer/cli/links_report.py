"""`mailer stats --campaign N --links` (what readers read in one campaign) and `mailer stats
--list SLUG --links` (a list's campaigns over time), people and machines apart.

Thin over :func:`mailer.ops.engagement.campaign_engagement`; titles and URLs come from the
issue and are printed as text, never as markup (safe_cell).
"""

from __future__ import annotations

import json
from datetime import timedelta

import typer
from rich.table import Table

from mailer.cli.context import AppContext
from mailer.cli.safe_text import safe_cell
from mailer.ops.engagement import CampaignEngagement, campaign_engagement, list_engagement
from subscribers import store
from subscribers.models import utcnow


def show_links(actx: AppContext, campaign_id: int, *, as_json: bool) -> None:
    """Print the campaign's per-link clicks and its opens (``--json``: the report's shape)."""
    with actx.sessions() as session:
        report = campaign_engagement(session, campaign_id)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return
    _print(actx, report)


def _print(actx: AppContext, report: CampaignEngagement) -> None:
    console = actx.console
    table = Table(
        "#",
        "title",
        "url",
        "human clicks",
        "unique human clickers",
        "machine",
        "proxy",
        title=f"campaign {report.campaign_id}: clicks per link",
    )
    for n, link in enumerate(report.links, start=1):
        table.add_row(
            str(n),
            safe_cell(link.title[:50]),
            safe_cell(link.url[:60]),
            str(link.human_clicks),
            str(link.unique_human_clickers),
            str(link.machine_clicks),
            str(link.proxy_clicks),
        )
    console.print(table)
    opens = report.opens
    console.print(
        f"sent {report.sent}  readers who clicked {report.unique_human_clickers} "
        f"(click-through {report.click_through_rate:.1%})  machine share of clicks "
        f"{report.machine_share:.0%}  hidden trap link hit {report.trap_clicks}",
        markup=False,
        highlight=False,
    )
    console.print(
        f"opens: human {opens.get('human', 0)} ({report.unique_human_openers} readers)  "
        f"machine {opens.get('machine', 0)}  proxy {opens.get('proxy', 0)} "
        "(Apple/Gmail fetch every image: a proxy open says nothing about a person)",
        markup=False,
        highlight=False,
    )


def show_list(actx: AppContext, slug: str, days: int, *, as_json: bool) -> None:
    """A list's campaigns of the last ``days`` days: readers who opened and clicked, rates."""
    with actx.sessions() as session:
        mlist = store.get_list(session, slug)
        lines = list_engagement(session, mlist.id, since=utcnow() - timedelta(days=days))
    if as_json:
        payload = {"list": slug, "days": days, "campaigns": [x.to_json() for x in lines]}
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    table = Table(
        "campaign",
        "started (UTC)",
        "subject",
        "sent",
        "readers opened",
        "readers clicked",
        "click-through",
        "machine share",
        title=f"{slug}: readers over the last {days} days (people only; machines apart)",
    )
    for x in lines:
        table.add_row(
            str(x.campaign_id),
            x.started_at.strftime("%Y-%m-%d %H:%M") if x.started_at else "-",
            safe_cell(x.subject[:40]),
            str(x.sent),
            str(x.unique_human_openers),
            str(x.unique_human_clickers),
            f"{x.click_through_rate:.1%}",
            f"{x.machine_share:.0%}",
        )
    actx.console.print(table)
