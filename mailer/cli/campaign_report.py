"""`mailer campaigns show`'s table: one campaign's counts, rate, times and failed rows.

Its own module, apart from mailer.cli.running, so that showing a campaign does not import
the send path (engine, transports, mailer.sending.publish: ~90 ms of start-up, issue 17).
"""

from __future__ import annotations

from rich.table import Table

from mailer.cli.context import AppContext
from mailer.sending import report as camp
from mailer.sending.waves import campaign_waves


def print_report(actx: AppContext, campaign_id: int) -> None:
    with actx.sessions() as s:
        rep = camp.report(s, campaign_id)
        waves = campaign_waves(s, rep.campaign)
    c = rep.campaign
    table = Table(title=f"campaign {c.id}: {c.subject}", show_header=False)
    table.add_row("list", rep.list_slug)
    table.add_row("status", c.status + (f" ({c.pause_reason})" if c.pause_reason else ""))
    for state in ("queued", "sending", "sent", "failed", "skipped"):
        table.add_row(state, str(rep.counts.get(state, 0)))
    table.add_row("readers", str(rep.total))
    table.add_row("in flight at a crash (re-claimed)", str(c.reclaimed))
    table.add_row("rate", f"{rep.rate:.1f}/s")
    for label, value in (
        ("scheduled", c.scheduled_at),
        ("expires", c.expires_at),
        ("started", c.started_at),
        ("finished", c.finished_at),
    ):
        if value is not None:
            table.add_row(label, value.isoformat(timespec="seconds"))
    if c.at_local:
        expiry = f", each expires {c.wave_expiry // 60} min after" if c.wave_expiry else ""
        table.add_row("at local", f"{c.at_local} in each reader's zone{expiry}")
    actx.console.print(table)
    if waves:  # --at-local: one row per release time
        shown = Table("wave (UTC)", "zones", "queued", "sent", "skipped", "failed", title="waves")
        for w in waves:
            zones = ", ".join(w.zones[:3]) + (f" +{len(w.zones) - 3}" if len(w.zones) > 3 else "")
            shown.add_row(
                w.at.strftime("%Y-%m-%d %H:%M"),
                f"{len(w.zones)}: {zones}" if w.zones else "0",
                str(w.counts.get("queued", 0) + w.counts.get("sending", 0)),
                str(w.counts.get("sent", 0)),
                str(w.counts.get("skipped", 0)),
                str(w.counts.get("failed", 0)),
            )
        actx.console.print(shown)
    if rep.failures:
        failures = Table("delivery", "email", "error")
        for did, email, cls, err in rep.failures:
            failures.add_row(str(did), email or "(erased)", f"{cls}: {err}")
        actx.console.print(failures)
