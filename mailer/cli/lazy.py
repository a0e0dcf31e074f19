"""The root ``mailer`` group, which imports a command's module only when that command runs.

Importing every command module up front made each ``mailer`` call pay for SQLAlchemy,
Alembic, boto3 and FastAPI (~0.8 s) before doing anything. :class:`LazyGroup` knows each
command by its name, module and one-line help (:class:`Entry`), so ``mailer --help`` lists
them all without importing one, and ``mailer lists show`` imports only the lists module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

import typer
from typer.core import TyperGroup

from mailer import heap
from mailer.cli import light_params


@dataclass(frozen=True)
class Entry:
    """Where one top-level command or group lives.

    ``attr`` names a ``typer.Typer`` in ``module`` (a group) or a plain function (a
    top-level command). ``help`` is the line ``mailer --help`` shows without importing the
    module; a test checks it is the command's own first line.
    """

    module: str
    attr: str
    help: str
    example: str = ""  # a group's: the last line of `mailer GROUP --help`


def load(name: str, entry: Entry) -> Any:
    """The click command of one entry, built as the root used to build it (plain help)."""
    target = getattr(importlib.import_module(entry.module), entry.attr)
    holder = typer.Typer(rich_markup_mode=None, add_completion=False)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    built = typer.main.get_group(holder).commands[name]
    light_params.install(built)  # no pydantic for plainly valid values (issue 17)
    for cmd in walk(built):
        examples_to_epilog(cmd)
    if entry.example:
        built.epilog = f"\b\nExample:\n  {entry.example}"
    heap.started()  # the command's imports are done: collections from here on
    return built


def walk(cmd: Any) -> list[Any]:
    """Every leaf command under ``cmd`` (``cmd`` itself when it is one)."""
    subs = getattr(cmd, "commands", None)
    if subs is None:
        return [cmd]
    return [leaf for sub in subs.values() for leaf in walk(sub)]


def examples_to_epilog(cmd: Any) -> None:
    """Move the docstring's ``Example:`` part into the epilog, so ``--help`` ends with it."""
    head, sep, example = (cmd.help or "").partition("Example:")
    if sep:
        cmd.help = head.rstrip()
        lines = [line.strip() for line in example.strip().splitlines() if line.strip()]
        cmd.epilog = "\b\nExample:\n" + "\n".join("  " + line for line in lines)


class LazyGroup(TyperGroup):
    """A group whose members are imported on first use (run, its help, a test walking them)."""

    entries: Mapping[str, Entry] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.entries, *(n for n in self.commands if n not in self.entries)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.entries:
            self.commands[cmd_name] = load(cmd_name, self.entries[cmd_name])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list from the entries' help lines: no module imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            entry = self.entries.get(name)
            text = entry.help if entry else self.commands[name].get_short_help_str(limit)
            rows.append((name, shorten(text, limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """As click does, with "Did you mean" drawn from every command, loaded or not."""
        name = args[0] if args else ""
        known = self.list_commands(ctx)
        if name and not name.startswith("-") and name not in known:
            matches = get_close_matches(name, known)
            hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word to fit ``limit`` characters, with "..." when cut."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 3, 1)].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "..."
