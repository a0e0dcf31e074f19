"""The ``mailer`` command: thin commands over the library.

Each command group lives in its own module (imported below, which registers it on ``app``).
Errors from the library (``MailerError``) and from the store's driver (explained by
:mod:`subscribers.db_errors`) become one line on stderr and a non-zero exit, never a
traceback. Every command's docstring ends with an ``Example:`` line, which
:func:`command` moves into the help epilog so that ``--help`` ends with it.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from sqlalchemy.exc import DBAPIError

# Command modules: importing one registers its commands. Keep README's CLI order.
from mailer.cli import (
    feedback_cmds,  # noqa: F401
    issue_cmds,  # noqa: F401
    keys_cmds,  # noqa: F401
    ops_cmds,  # noqa: F401
    send_cmds,  # noqa: F401
    store_cmds,  # noqa: F401
    web_cmds,  # noqa: F401
)
from mailer.cli.app import app
from mailer.cli.context import AppContext
from mailer.cli.safe_text import safe_text
from mailer.errors import ConfigError, MailerError

__all__ = ["app", "command", "iter_commands", "main"]


def iter_commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every leaf command with its full path, e.g. (("lists", "create"), cmd)."""
    if hasattr(group, "commands"):
        out = []
        for name, sub in sorted(group.commands.items()):
            out.extend(iter_commands(sub, (*path, name)))
        return out
    return [(path, group)]


def command() -> Any:
    """The click command tree, with each command's example moved into its epilog."""
    root = typer.main.get_command(app)
    for _, cmd in iter_commands(root):
        help_text = cmd.help or ""
        head, sep, example = help_text.partition("Example:")
        if sep:
            cmd.help = head.rstrip()
            lines = [line.strip() for line in example.strip().splitlines() if line.strip()]
            cmd.epilog = "\b\nExample:\n" + "\n".join("  " + line for line in lines)
    return root


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error a user can meet ends as one line on stderr."""
    actx = AppContext()
    try:
        command().main(args=argv, prog_name="mailer", obj=actx)
    except ConfigError as err:
        _fail(f"configuration error: {err}", 2)
    except MailerError as err:
        _fail(f"error: {err}", 1)
    except DBAPIError as err:  # the store's driver: not there, unreachable, locked
        described = actx.explain(err)
        kind = "configuration error" if isinstance(described, ConfigError) else "error"
        _fail(f"{kind}: {described}", 2 if isinstance(described, ConfigError) else 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, code: int) -> NoReturn:
    """One line on stderr (text from the store or a driver is shown escaped), then exit."""
    print(f"mailer: {safe_text(message)}", file=sys.stderr)
    sys.exit(code)
