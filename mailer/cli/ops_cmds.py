"""`mailer doctor`, `mailer ses setup`: thin over mailer.ops.doctor and
mailer.ops.provisioning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from mailer.cli.context import AppContext, app_context
from mailer.errors import ConfigError, MailerError
from mailer.issue.files import parse_issue_file
from mailer.ops.aws import AwsClients
from mailer.ops.doctor import (
    Check,
    check_account,
    check_base_url,
    check_configuration_set,
    check_database,
    check_feedback_wiring,
    check_identity,
    check_message,
    check_secret_key,
    domains_of,
    expected_in_development,
    sample_message,
)
from mailer.ops.provisioning import DEFAULT_TOPIC, SetupResult, setup
from subscribers.models import MailingList

ses_app = typer.Typer(help="Amazon SES provisioning.", no_args_is_help=True)

_STATUS_STYLE = {"pass": "green", "fail": "bold red", "skip": "dim"}


# -- doctor ----------------------------------------------------------------------------------


def _print_checks(actx: AppContext, checks: list[Check]) -> None:
    for c in checks:
        style = _STATUS_STYLE[c.status]
        mark = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[c.status]
        line = f"[{style}]{mark}[/{style}]  {c.name}"
        if c.detail:
            line += f" — {c.detail}"
        actx.console.print(line, highlight=False, markup=True)


def _list_from_addresses(actx: AppContext) -> list[str]:
    with actx.sessions() as session:
        return list(session.scalars(select(MailingList.from_address)))


def doctor(
    ctx: typer.Context,
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", help="From domain to check (default: every list's)."),
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", help="SQS queue (name or URL) SNS should feed.")
    ] = None,
    issue: Annotated[
        Path | None, typer.Option("--issue", help="Check this issue's email (default: a sample).")
    ] = None,
    newsletter: Annotated[
        str, typer.Option("--newsletter", help="Name in the sample message.")
    ] = "The China Brief",
    ses: Annotated[
        bool | None,
        typer.Option("--ses/--no-ses", help="Check SES (default: when MAILER_TRANSPORT=ses)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check everything before a send: database, secret key, https base URL, the SES identity
    (verified, DKIM, custom MAIL FROM), configuration set and event destination, the SNS topic
    or SQS queue, the SES account, and a rendered sample (List-Unsubscribe headers, plain-text
    part, size under Gmail's clipping limit). Exits 1 when any check fails.

    Example: MAILER_TRANSPORT=ses mailer doctor --domain news.example.com
    """
    actx = app_context(ctx)
    settings = actx.settings
    checks: list[Check] = []
    db = check_database(actx.engine)
    checks.append(db)
    from_addresses = _list_from_addresses(actx) if db.ok else []
    checks += [check_secret_key(settings), check_base_url(settings)]

    use_ses = settings.transport == "ses" if ses is None else ses
    if use_ses:
        checks += _ses_checks(actx, domain or domains_of(from_addresses), queue)
    else:
        checks.append(
            Check("SES", "skip", f"MAILER_TRANSPORT is {settings.transport} (pass --ses)")
        )

    from_address = from_addresses[0] if from_addresses else f"news@{(domain or ['example.com'])[0]}"
    try:
        parsed = None
        if issue is not None:
            parsed = parse_issue_file(issue)
        raw = sample_message(
            settings, from_address=from_address, newsletter=newsletter, issue=parsed
        )
    except MailerError as err:
        checks.append(Check("rendered sample", "fail", str(err)))
    else:
        checks += check_message(raw)

    if as_json:
        typer.echo(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        _print_checks(actx, checks)
    failures = [c for c in checks if not c.ok]
    if failures:
        if not as_json:
            expected = expected_in_development(settings, failures)
            if expected:  # part of the report (stdout); stderr keeps its one line
                names = ", ".join(c.name for c in expected)
                actx.console.print(
                    f"expected in development ({len(expected)} of them: {names}): "
                    "MAILER_BASE_URL is on this machine and MAILER_ENV is not production. "
                    "Before real mail: an https MAILER_BASE_URL and a MAILER_SECRET_KEY "
                    "from `mailer keygen`",
                    markup=False,
                )
            actx.err.print(f"{len(failures)} of {len(checks)} checks failed", markup=False)
        raise typer.Exit(1)


def _ses_checks(actx: AppContext, domains: list[str], queue: str | None) -> list[Check]:
    settings = actx.settings
    try:
        clients = AwsClients.from_settings(settings)
    except ConfigError as err:
        return [Check("SES clients", "fail", str(err))]
    checks: list[Check] = []
    if not domains:
        checks.append(
            Check("From domain", "fail", "no list and no --domain: nothing to check in SES")
        )
    for d in domains:
        checks += check_identity(clients.sesv2, d)
    set_checks, topics = check_configuration_set(clients.sesv2, settings.ses_configuration_set)
    checks += set_checks
    checks.append(check_feedback_wiring(clients, settings, topics, queue=queue))
    checks += check_account(clients.sesv2)
    return checks


# -- ses setup -------------------------------------------------------------------------------


@ses_app.command("setup")
def ses_setup(
    ctx: typer.Context,
    domain: Annotated[str, typer.Option("--domain", help="The From domain to send from.")],
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help="HTTPS URL of `mailer serve`'s /webhooks/ses."),
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", help="SQS queue name for `mailer feedback poll`.")
    ] = None,
    topic: Annotated[str, typer.Option("--topic", help="SNS topic name.")] = DEFAULT_TOPIC,
    configuration_set: Annotated[
        str | None,
        typer.Option("--configuration-set", help="Default: MAILER_SES_CONFIGURATION_SET."),
    ] = None,
    mail_from: Annotated[
        str, typer.Option("--mail-from-subdomain", help="Custom MAIL FROM subdomain.")
    ] = "mail",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was done and the DNS records as JSON.")
    ] = False,
    tracking: Annotated[
        bool,
        typer.Option("--tracking", help="Also publish SES's open and click events (issue 16)."),
    ] = False,
) -> None:
    """Create, idempotently, the configuration set, its SNS event destination, the SNS topic
    and the HTTPS subscription (or the SQS queue with its policy), and the email identity with
    a custom MAIL FROM; print the DNS records to publish. Safe to run again.

    Example: mailer ses setup --domain news.example.com --webhook-url https://news.example.com/webhooks/ses
    """
    actx = app_context(ctx)
    settings = actx.settings
    name = configuration_set or settings.ses_configuration_set
    if not name:
        raise ConfigError(
            "no configuration set: set MAILER_SES_CONFIGURATION_SET or pass --configuration-set"
        )
    clients = AwsClients.from_settings(settings)
    result = setup(
        clients,
        domain=domain,
        configuration_set=name,
        webhook_url=webhook_url,
        queue_name=queue,
        topic_name=topic,
        mail_from_subdomain=mail_from,
        log=None if as_json else lambda line: actx.console.print(line, highlight=False),
        tracking=tracking,
    )
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_setup_next_steps(actx, result, webhook_url is not None, settings.sns_topic_arns)


def _print_setup_next_steps(
    actx: AppContext, result: SetupResult, webhook: bool, allowlist: tuple[str, ...]
) -> None:
    console = actx.console
    console.print()
    console.print(f"[bold]DNS records to publish for {result.domain}[/bold]")
    if not any(r.type == "CNAME" for r in result.dns):
        console.print(
            f"[yellow]SES has not issued DKIM tokens yet (DKIM {result.dkim_status}); run this "
            "again in a minute to print the DKIM CNAMEs[/yellow]"
        )
    table = Table("type", "name", "value", "for")
    for r in result.dns:
        table.add_row(r.type, r.name, r.value, r.purpose)
    console.print(table)
    console.print("Then:")
    if webhook and result.topic_arn not in allowlist:
        console.print(f"  export MAILER_SNS_TOPIC_ARNS={result.topic_arn}")
    console.print(f"  export MAILER_SES_CONFIGURATION_SET={result.configuration_set}")
    if result.queue_url:
        console.print(f"  mailer feedback poll --queue-url {result.queue_url}")
    console.print(f"  mailer doctor --domain {result.domain}")
