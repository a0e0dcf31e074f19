"""The export's guard against spreadsheet formulas, and the import's way back.

A cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR is a formula to a spreadsheet
(CSV injection), so the export writes it with a leading ``'``, which makes it text. The
importer strips exactly that guard, so an exported file imports as the same people: a
quote is removed only where one stands before those characters, and a value that itself
starts with quotes before them (``'=x``) gets one more on the way out (``''=x``), so that
each value has one written form and comes back as it was.
"""

from __future__ import annotations

import re

__all__ = ["guard", "unguard"]

#: what a spreadsheet reads as the start of a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_STARTS = "[" + re.escape("".join(FORMULA_STARTS)) + "]"
_NEEDS_GUARD = re.compile("'*" + _STARTS)  # quotes too: "'=x" is written "''=x"
_GUARDED = re.compile("'+" + _STARTS)


def guard(value: str) -> str:
    """``value`` as a cell no spreadsheet runs: a leading ``'`` where it would be a formula
    (or is quotes before one)."""
    return "'" + value if _NEEDS_GUARD.match(value) else value


def unguard(cell: str) -> str:
    """The value :func:`guard` wrote ``cell`` for: its guard quote removed, if it has one."""
    return cell[1:] if _GUARDED.match(cell) else cell
