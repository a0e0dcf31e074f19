"""The list an issue file names in its front matter (``list: china-brief``), for the
commands that take an issue file: `send` needs no --list then, and `issue render` shows
the From of that list."""

from __future__ import annotations

from pathlib import Path

import typer

from mailer.cli.context import AppContext
from mailer.errors import MailerError
from mailer.issue.files import decode_issue_bytes
from mailer.issue.markdown import declared_list
from subscribers import store
from subscribers.models import MailingList


def list_of(file: Path) -> str | None:
    """The ``list:`` of a Markdown issue, or None (read after the issue parsed once, so this
    cannot fail anew)."""
    text = decode_issue_bytes(file.read_bytes(), source=str(file))
    return declared_list(text, source=str(file))


def choose_list(file: Path, option: str | None) -> str:
    """--list, else the file's ``list:``; both given and different is refused (which one was
    meant?), neither is a usage error naming both ways."""
    declared = list_of(file)
    if option and declared and option != declared:
        raise typer.BadParameter(
            f"{option} but {file} says list: {declared}; drop --list or change the front matter",
            param_hint="--list",
        )
    chosen = option or declared
    if not chosen:
        raise typer.BadParameter(
            f"no list to send to: pass --list SLUG or put 'list: SLUG' in {file}'s front matter",
            param_hint="--list",
        )
    return chosen


def find_list(actx: AppContext, slug: str) -> tuple[MailingList | None, str | None]:
    """The store's list ``slug``, or None and why not (no database yet, no such list): a
    preview still renders without it."""
    try:
        with actx.sessions() as session:
            return store.get_list(session, slug), None
    except MailerError as err:
        return None, str(err)
    except Exception as err:
        described = actx.explain(err)  # the store's driver: missing, unreachable, locked
        if described is None:
            raise
        return None, str(described)
