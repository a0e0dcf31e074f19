"""Text we did not write, made safe to print on a terminal.

Names, subjects, bounce diagnostics and CSV cells come from people we do not control. A
control character among them is an instruction to the operator's terminal (an ESC sequence
moves the cursor, retitles the window, hides what follows, or plants a hyperlink), a bidi
override reorders what the operator reads, and Rich reads ``[link=...]`` in a string as
markup. Every CLI path that prints such text passes it through :func:`safe_text` (or
:func:`safe_cell` for a table, :func:`safe_json` for ``--json``), which shows each of these
characters as a visible escape (``\\x1b``, ``\\u202e``) and never as markup.
:class:`SafeConsole` applies the same rule to every string any command prints through the
CLI's consoles, so a command that forgets still cannot write a raw control character.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.console import Console
from rich.text import Text

__all__ = ["SafeConsole", "safe_cell", "safe_json", "safe_text"]

# Bidi controls: ALM, LRM, RLM, the embeddings and overrides, the isolates.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# C0 (tab and line breaks included), DEL, C1, the Unicode line and paragraph separators.
_CONTROLS = "\x00-\x1f\x7f-\x9f\u2028\u2029"
_UNSAFE = re.compile(f"[{_CONTROLS}{_BIDI}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
# What JSON leaves raw inside strings (json.dumps already escapes C0).
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\u2028\u2029{_BIDI}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe_text(value: object, *, lines: bool = False) -> str:
    """``value`` as text, every control, line separator and bidi control shown as an escape.

    ``lines=True`` keeps ``\\n``: for text of several lines that we composed ourselves
    (a stored value should stay on its one line, so it cannot forge the next one).
    """
    text = value if isinstance(value, str) else str(value)
    return (_UNSAFE_BUT_NEWLINE if lines else _UNSAFE).sub(_escape, text)


def safe_cell(value: object) -> Text:
    """A table cell (or a line) showing ``value`` as plain text: escaped, never markup."""
    return Text(safe_text(value))


def safe_json(data: Any) -> str:
    """``data`` as indented JSON that keeps non-Latin names readable but escapes, as
    ``\\uXXXX``, every character a terminal would obey (still the same JSON)."""
    return _JSON_UNSAFE.sub(
        lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, indent=2, ensure_ascii=False)
    )


class SafeConsole(Console):
    """A Rich console that passes every string it prints through :func:`safe_text`
    (line breaks kept) before reading markup from it: table cells and lines that some
    command forgot to make safe reach the terminal escaped all the same."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(safe_text(text, lines=True), **kwargs)
