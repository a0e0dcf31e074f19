"""What every CLI command gets: settings read once, the store opened on first use, and
consoles that print text from the store safely.

The store is opened only if it exists: a SQLite file is created by ``mailer init`` and by
nothing else, so a read command pointed at a wrong path fails with "run `mailer init`"
instead of leaving an empty database behind. Connecting waits at most MAILER_DB_TIMEOUT (a
file another process holds locked, a server that does not answer); statements on SQLite
then wait the usual busy timeout for another writer.
"""

from __future__ import annotations

import os
import sys
from functools import cached_property
from typing import TYPE_CHECKING

import typer

from mailer.cli.safe_text import SafeConsole
from mailer.config import Settings
from mailer.errors import MailerError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker


#: the width Rich lays out for when stdout is not a terminal: tables take what they need
PIPED_WIDTH = 100_000


class AppContext:
    """One command's settings (read from the environment on first use, so ``--help`` needs
    none), store and consoles."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._opened = False  # whether this command opened the store (and so SQLAlchemy)
        # piped or redirected (and no COLUMNS given): as wide as the text, never cut at 80
        width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPED_WIDTH
        self.console: SafeConsole = SafeConsole(soft_wrap=True, width=width)
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
        # Imported here: SQLAlchemy and the store's engine factory cost ~200 ms (-X importtime,
        # most of a light command's start-up); `mailer --help`, keygen and issue files never
        # open the store and must not pay it.
        from subscribers.db import make_engine

        settings = self.settings
        self._opened = True
        return make_engine(
            settings.database_url,
            create=create,
            open_timeout=settings.db_timeout,
            idle_timeout=settings.db_idle_timeout,
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        # Imported here: loaded already by self.engine just before, so it costs nothing
        # (see _make_engine for why SQLAlchemy is not imported at the top).
        from subscribers.db import session_factory

        return session_factory(self.engine)

    def close(self) -> None:
        """Close the store if this command opened it (a SQLite file's write-ahead log is
        folded back into it when its last connection closes)."""
        if "engine" in self.__dict__:
            self.engine.dispose()

    @property
    def interactive(self) -> bool:
        return sys.stdout.isatty()

    def explain(self, err: BaseException) -> MailerError | None:
        """The one line a database error from this command's store is told as, or None when
        ``err`` is not one (a command that never opened the store meets none)."""
        if not self._opened:
            return None
        # Imported here: SQLAlchemy is loaded once the store was opened, so these cost
        # nothing; at the top they would cost every command ~200 ms (see _make_engine).
        from sqlalchemy.exc import DBAPIError

        from subscribers.db_errors import explain

        if not isinstance(err, DBAPIError):
            return None
        settings = self.settings
        return explain(err, settings.database_url, waited=settings.db_timeout)


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext :func:`mailer.cli.main` handed in (or a new one: tests invoking the
    click command directly)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj
