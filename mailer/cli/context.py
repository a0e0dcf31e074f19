"""What every CLI command gets: settings read once, the store opened on first use, and
consoles that print text from the store safely.

The store is opened only if it exists: a SQLite file is created by ``mailer init`` and by
nothing else, so a read command pointed at a wrong path fails with "run `mailer init`"
instead of leaving an empty database behind. Connecting waits at most MAILER_DB_TIMEOUT (a
file another process holds locked, a server that does not answer); statements on SQLite
then wait the usual busy timeout for another writer.
"""

from __future__ import annotations

import sys
from functools import cached_property

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mailer.cli.safe_text import SafeConsole
from mailer.config import Settings
from mailer.errors import MailerError
from subscribers.db import make_engine, session_factory
from subscribers.db_errors import explain


class AppContext:
    """One command's settings (read from the environment on first use, so ``--help`` needs
    none), store and consoles."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self.console: SafeConsole = SafeConsole(soft_wrap=True)
        self.err: SafeConsole = SafeConsole(stderr=True, soft_wrap=True)

    @cached_property
    def settings(self) -> Settings:
        return self._settings if self._settings is not None else Settings.from_env()

    @cached_property
    def engine(self) -> Engine:
        """The store, which must exist already."""
        return self._make_engine(create=False)

    def creating_engine(self) -> Engine:
        """The store, created if it is not there (for ``mailer init`` only)."""
        return self._make_engine(create=True)

    def _make_engine(self, *, create: bool) -> Engine:
        settings = self.settings
        return make_engine(settings.database_url, create=create, open_timeout=settings.db_timeout)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @property
    def interactive(self) -> bool:
        return sys.stdout.isatty()

    def explain(self, err: DBAPIError) -> MailerError:
        """The one line a database error from this command's store is told as."""
        settings = self.settings
        return explain(err, settings.database_url, waited=settings.db_timeout)


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext :func:`mailer.cli.main` handed in (or a new one: tests invoking the
    click command directly)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj
