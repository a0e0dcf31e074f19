"""The ``mailer`` command: thin commands over the library.

HOW A COMMAND GROUP IS REGISTERED (start-up stays fast only if every group follows this):

1. Write the group in its own module, ``mailer/cli/<name>_cmds.py``, as a ``typer.Typer``
   (``tokens_app = typer.Typer(help="API tokens: ... .", no_args_is_help=True)`` with
   ``@tokens_app.command("create")`` ...). A top-level command (``mailer send``) is a plain
   function in its module, without a decorator. The module does NOT import
   ``mailer.cli.app`` or call ``app.add_typer``: nothing registers itself on import.
2. Add one entry to :data:`COMMANDS` below, in README's CLI order:
   ``"tokens": Entry("mailer.cli.tokens_cmds", "tokens_app", "<the group's help line>",
   example="mailer tokens create ...")`` (a group's example ends its ``--help``).
   The help line is what ``mailer --help`` shows without importing the module; it must be
   the group's (or command's) own first line (tests/test_cli_startup.py checks it).
3. Nothing else imports a ``*_cmds`` module (except tests): the root group imports it when
   that command runs. A sub-command added to an existing group (``lists set``) goes into
   that group's module; nothing changes here.
4. Only the command's own module pays for what it imports. Modules shared by light
   commands (``context``, ``safe_text``, ``exit_codes``) import no SQLAlchemy, boto3,
   FastAPI or Alembic at the top; tests/test_cli_startup.py checks ``mailer --help``, and
   that ``lists show`` and ``campaigns show`` load neither pydantic (typer's coercion is
   skipped for plainly valid values: :mod:`mailer.cli.light_params`, installed by
   :func:`command` and :func:`mailer.cli.lazy.load`), email-validator, the renderer nor
   the transports. An import used only in annotations goes under ``TYPE_CHECKING``.

Errors from the library (``MailerError``) and from the store's driver (explained by
:mod:`subscribers.db_errors`) become one line on stderr and a non-zero exit, never a
traceback. Every command's docstring ends with an ``Example:`` line, which is moved into
the help epilog so that ``--help`` ends with it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, NoReturn

import typer

# typer's own copy of click: the exceptions its commands raise (typer re-exports only some).
# Not click.exceptions: typer 0.29 vendors click, and the click package's classes are other
# classes (a usage error would escape them as a traceback; tests/test_cli_exits.py).
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from mailer.cli import light_params
from mailer.cli.app import app
from mailer.cli.context import AppContext
from mailer.cli.exit_codes import ExitCode
from mailer.cli.lazy import Entry, LazyGroup
from mailer.cli.safe_text import safe_text
from mailer.errors import ConfigError, MailerError

__all__ = ["COMMANDS", "app", "command", "iter_commands", "main"]

COMMANDS: dict[str, Entry] = {
    "init": Entry(
        "mailer.cli.init_cmds",
        "init",
        "Create or upgrade the database to the current schema (alembic upgrade head).",
    ),
    "keygen": Entry(
        "mailer.cli.keys_cmds",
        "keygen",
        "Print a new random secret key for MAILER_SECRET_KEY (links are signed with it).",
    ),
    "lists": Entry(
        "mailer.cli.lists_cmds",
        "lists_app",
        "Mailing lists.",
        example='mailer lists create china-brief --name "The China Brief" --from b@example.org',
    ),
    "subscribers": Entry(
        "mailer.cli.subscribers_cmds",
        "subscribers_app",
        "Subscribers: add, import, export, show, erase.",
        example="mailer subscribers import readers.csv --list china-brief --confirmed",
    ),
    "suppressions": Entry(
        "mailer.cli.suppressions_cmds",
        "suppressions_app",
        "The suppression list: addresses never mailed.",
        example="mailer suppressions add someone@example.com --reason manual",
    ),
    "issue": Entry(
        "mailer.cli.issue_cmds",
        "issue_app",
        "Issue files: check them, preview the email.",
        example="mailer issue check issues/2026-11-28.md",
    ),
    "send": Entry(
        "mailer.cli.send_cmds",
        "send",
        "Send an issue to a list: parse, render once, enqueue every active reader, send.",
    ),
    "campaigns": Entry(
        "mailer.cli.campaigns_cmds",
        "campaigns_app",
        "Campaigns: list, show, pause, resume, cancel.",
        example="mailer campaigns list --limit 5",
    ),
    "worker": Entry(
        "mailer.cli.send_cmds",
        "worker",
        "Send scheduled and resumed campaigns; keeps running (several on PostgreSQL).",
    ),
    "webhooks": Entry(
        "mailer.cli.webhooks_cmds",
        "webhooks_app",
        "Webhooks out: signed events (campaign.done, ...) posted to your endpoints.",
        example="mailer webhooks list",
    ),
    "stats": Entry(
        "mailer.cli.stats_cmds",
        "stats_cmd",
        "Delivery and reputation: sent, delivered, bounces, complaints, unsubscribes, rates "
        "against SES's and Gmail's thresholds, per campaign and per recipient domain, and "
        "the suppression list's growth.",
    ),
    "feedback": Entry(
        "mailer.cli.feedback_cmds",
        "feedback_app",
        "Bounces and complaints: take SES events in from a queue or from files.",
        example="mailer feedback ingest bounce.json",
    ),
    "doctor": Entry(
        "mailer.cli.ops_cmds",
        "doctor",
        "Check everything before a send: database, secret key, https base URL, the SES "
        "identity (verified, DKIM, custom MAIL FROM), configuration set and event "
        "destination, the SNS topic or SQS queue, the SES account, and a rendered sample "
        "(List-Unsubscribe headers, plain-text part, size under Gmail's clipping limit).",
    ),
    "ses": Entry(
        "mailer.cli.ops_cmds",
        "ses_app",
        "Amazon SES provisioning.",
        example="mailer ses setup --domain example.org --webhook-url https://news.example.org/webhooks/ses",
    ),
    "serve": Entry(
        "mailer.cli.web_cmds",
        "serve",
        "Serve the reader web pages (subscribe, confirm, unsubscribe, preferences, archive).",
    ),
    "tokens": Entry(
        "mailer.cli.tokens_cmds",
        "tokens_app",
        "API tokens: create (shown once), list, revoke.",
        example="mailer tokens create --name pipeline --role editor",
    ),
}


def iter_commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every leaf command with its full path, e.g. (("lists", "create"), cmd); imports every
    command module (for tests and docs, never on a user's path)."""
    if not hasattr(group, "list_commands"):
        return [(path, group)]
    ctx = typer.Context(group)
    out = []
    for name in sorted(group.list_commands(ctx)):
        out.extend(iter_commands(group.get_command(ctx, name), (*path, name)))
    return out


def command() -> LazyGroup:
    """The root click group: every command listed, each module imported on first use."""
    root = typer.main.get_group(app)
    assert isinstance(root, LazyGroup)
    root.entries = COMMANDS
    light_params.install(root)  # its --help: no pydantic (each command's in lazy.load)
    return root


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error a user can meet ends as one line on stderr."""
    actx = AppContext()
    try:
        code = command().main(args=argv, prog_name="mailer", obj=actx, standalone_mode=False)
    except NoArgsIsHelpError as err:  # `mailer lists`: the group's help, as click shows it
        err.show()
        sys.exit(err.exit_code)
    except UsageError as err:
        _usage(err)
    except ClickException as err:  # an unreadable file argument and the like
        _fail(f"error: {err.format_message()}", err.exit_code)
    except typer.Abort:  # a confirmation prompt answered no
        _fail("aborted", ExitCode.ERROR)
    except ConfigError as err:
        _fail(f"configuration error: {err}", ExitCode.USAGE)
    except MailerError as err:
        _fail(f"error: {err}", ExitCode.ERROR)
    except KeyboardInterrupt:
        _fail("interrupted", ExitCode.INTERRUPTED)
    except Exception as err:
        described = actx.explain(err)  # the store's driver: not there, unreachable, locked
        if described is None:
            raise
        if isinstance(described, ConfigError):
            _fail(f"configuration error: {described}", ExitCode.USAGE)
        _fail(f"error: {described}", ExitCode.ERROR)

    if code == ExitCode.INTERRUPTED:  # Ctrl-C, which typer turns into exit 130
        _fail("interrupted", ExitCode.INTERRUPTED)
    code = code if isinstance(code, int) else 0  # as click's standalone mode ends
    if argv is None:  # the process's own command line (a test calling main() goes on)
        _leave_now(actx, code)
    sys.exit(code)


def _leave_now(actx: AppContext, code: int) -> None:
    """End the process, its command done, without the interpreter's teardown: freeing every
    object one by one (SQLAlchemy's, botocore's models, the batches') came after the summary
    was printed, which the person at the prompt waits for: 2.6% of a 2,000-reader bulk send's
    instructions (callgrind), over a second on the loaded machine. Not while another thread
    runs (it would be cut off); the store is closed (SQLite folds its write-ahead log into
    the file), log handlers and output flushed first."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    actx.close()
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`)
            stream.flush()
    os._exit(code)


def _usage(err: UsageError) -> NoReturn:
    """A usage error in one line (click prints four): which command, what is wrong, where
    the help is."""
    path = err.ctx.command_path if err.ctx is not None else "mailer"
    print(f"{path}: {err.format_message()} (see `{path} --help`)", file=sys.stderr)
    sys.exit(ExitCode.USAGE)


def _fail(message: str, code: int) -> NoReturn:
    """One line on stderr (text from the store or a driver is shown escaped), then exit."""
    print(f"mailer: {safe_text(message)}", file=sys.stderr)
    sys.exit(code)
