"""What every CLI command gets: settings read once, and the store built on first use."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from subscribers.db import make_engine, session_factory


@dataclass
class AppContext:
    settings: Settings
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @property
    def interactive(self) -> bool:
        return sys.stdout.isatty()


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext the root callback stored (built lazily so --help needs no settings)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext(Settings.from_env())
    return root.obj
