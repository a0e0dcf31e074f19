"""How every listing is printed: a table on a terminal, tab-separated lines when piped,
JSON with ``--json``.

A Rich table piped into ``grep`` or a file was cut at 80 columns and drawn with box
characters; a script needs every value whole, one row a line. So a listing hands its rows
here once and :func:`emit` picks the form: on a terminal a table that fits (long text wraps
at word boundaries, never cut mid-word), anywhere else a header line and one line per row,
columns separated by tabs (text we did not write shown escaped, so a tab or line break in
it shows as ``\\x09``/``\\x0a`` and cannot split a row), and with ``--json`` a list of
objects keyed by the column names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Column as RichColumn
from rich.table import Table

from mailer.cli.context import AppContext
from mailer.cli.safe_text import safe_cell, safe_json, safe_text


@dataclass(frozen=True)
class Col:
    """One column: its name (the JSON key and the header), and on a terminal whether it
    must never wrap (a slug or id other commands take) and whether it is numeric."""

    name: str
    keep: bool = False
    numeric: bool = False


def emit(
    actx: AppContext,
    columns: Sequence[Col],
    rows: Sequence[Sequence[Any]],
    *,
    as_json: bool = False,
    title: str | None = None,
) -> None:
    """Print ``rows`` (one value per column; None shows as '-') in the form that suits."""
    if as_json:
        keys = [c.name.replace(" ", "_") for c in columns]
        print(safe_json([dict(zip(keys, row, strict=True)) for row in rows]))
        return
    if not actx.interactive:
        print("\t".join(c.name for c in columns))
        for row in rows:
            print("\t".join(_plain(v) for v in row))
        return
    table = Table(
        *(
            RichColumn(
                c.name,
                no_wrap=c.keep,
                min_width=max((len(str(r[i])) for r in rows), default=0) if c.keep else None,
                justify="right" if c.numeric else "left",
                overflow="fold",  # nothing is cut: a word longer than the column folds
            )
            for i, c in enumerate(columns)
        ),
        title=title,
    )
    for row in rows:
        table.add_row(*(safe_cell("-" if v is None else v) for v in row))
    actx.console.print(table)


def _plain(value: Any) -> str:
    """One cell of a tab-separated line: escaped, and a tab or line break cannot split it."""
    if value is None:
        return "-"
    return safe_text(value)  # \t and \n are controls: shown as \x09 and \x0a
