"""Just enough Handlebars to render SES inline templates in the test server.

Supports what SES templates built by :mod:`mailer.transports.ses_template` use: ``{{var}}``
(HTML-escaped like Handlebars.js), ``{{{var}}}`` (verbatim), ``\\{{`` (a literal ``{{``)
and ``\\\\{{`` (a backslash, then a variable). Block helpers are out of scope.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(
    r"\\\\(?=\{\{)"  # \\ before a mustache: a literal backslash
    r"|\\(\{\{.*?\}\})"  # \{{...}}: literal text
    r"|\{\{\{\s*([^}\s]+)\s*\}\}\}"  # {{{var}}}
    r"|\{\{\s*([^}\s]+)\s*\}\}",  # {{var}}
    re.S,
)
_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&#x27;",
        "`": "&#x60;",
        "=": "&#x3D;",
    }
)


def variables(template: str) -> set[str]:
    """Names a template refers to."""
    found: set[str] = set()
    for m in _TOKEN.finditer(template):
        name = m.group(2) or m.group(3)
        if name:
            found.add(name)
    return found


def render(template: str, data: Mapping[str, object]) -> str:
    """Render; a missing variable renders empty, as in Handlebars."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(1)
        if m.group(2) is not None:
            return _text(data.get(m.group(2)))
        if m.group(3) is not None:
            return _text(data.get(m.group(3))).translate(_ESCAPES)
        return "\\"

    return _TOKEN.sub(sub, template)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
