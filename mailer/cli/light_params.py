"""Command-line values coerced without pydantic when they are plainly valid (issue 17).

typer 0.29 coerces every parameter that is not a flag through a pydantic ``TypeAdapter``,
built the first time the parameter is processed, even for a value that was not given
(``mailer lists show`` with no SLUG). Importing pydantic for that costs a light command
about 80 ms of its start-up (-X importtime), a third of the 0.3 s goal.

:func:`install` gives each parameter a :class:`LightParam` in typer's own slot for it.
It takes only the values whose result is certain: a ``str`` given as a ``str``, a bool flag
given as a bool, an ``int`` given as an int or as plain ASCII digits and inside the
parameter's ``min``/``max``, a ``Path`` given as a non-empty ``str`` (``mailer send FILE``,
``issue check FILE``: pydantic was ~60 ms of their start-up). Anything else (a bad number,
an empty path, a choice, a float, a parser, a clamp) is handed to the coercion typer would
have built, which then replaces this one: the same values and the same error messages,
pydantic loaded only when needed.
tests/test_cli_startup.py checks both (pydantic absent; every result and message equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer._click import Context
from typer._coercion import RuntimeParam, build_runtime_param
from typer.core import _TyperParameter

#: an int as pydantic reads it for certain: no sign but "-", no leading zero, no "_" or blank
_PLAIN_INT = re.compile(r"-?[1-9][0-9]{0,17}|0", re.ASCII)


@dataclass(frozen=True)
class LightParam(RuntimeParam):
    """typer's coercion for plainly valid values, typer's own (pydantic's) for the rest."""

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        if self.parameter_info.parser is None:
            kind = self.annotation
            if kind is str and isinstance(value, str):
                return value
            if kind is bool and isinstance(value, bool):
                return value
            if kind is int and self._in_range(number := _as_int(value)):
                return number
            if kind is Path and isinstance(value, str) and value:
                return Path(value)  # what pydantic makes of a non-empty str
        # typer's own coercion from here on: built once, then used directly by typer
        full = build_runtime_param(param.type_descriptor)
        param._runtime_param = full
        return full._coerce_value(value, param=param, ctx=ctx)

    def _in_range(self, number: int | None) -> bool:
        info = self.parameter_info
        if number is None or info.clamp:
            return False
        return (info.min is None or number >= info.min) and (info.max is None or number <= info.max)


def _as_int(value: Any) -> int | None:
    """``value`` as an int when there is no doubt what it is, else None."""
    if type(value) is int:
        return value
    if isinstance(value, str) and _PLAIN_INT.fullmatch(value):
        return int(value)
    return None


def install(cmd: Any) -> None:
    """Give every typer parameter of ``cmd`` and its sub-commands, ``--help`` included, a
    :class:`LightParam` (one whose coercion typer has built already keeps it)."""
    for sub in getattr(cmd, "commands", {}).values():
        install(sub)
    # --help is made on first use and kept; made here, it is the one the command uses
    helper = cmd.get_help_option(Context(cmd)) if hasattr(cmd, "get_help_option") else None
    for param in [*getattr(cmd, "params", ()), helper]:
        if isinstance(param, _TyperParameter) and param._runtime_param is None:
            desc = param.type_descriptor
            param._runtime_param = LightParam(desc.parameter_info, desc.annotation)
