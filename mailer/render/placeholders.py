"""The per-reader placeholders: ``%%field%%`` in a rendered body, one per reader field.

The renderer writes them (:mod:`mailer.render.compiler`), and everything that fills them in
per reader reads them here: ``RenderedIssue.personalize``, the MIME template
(:mod:`mailer.render.message`) and the SES transport, which translates them to its own
template syntax. Plain ASCII that Jinja, mjml-python and premailer all pass through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mailer.errors import RenderError

__all__ = [
    "FIELDS",
    "GREETING_FIELD",
    "NAME_SLOT",
    "PLACEHOLDER_RE",
    "SAMPLE_VALUES",
    "TRACK_FIELD",
    "clean_field",
    "greeting_line",
    "placeholder",
    "splice",
    "split_template",
]

FIELDS: tuple[str, ...] = ("unsubscribe_url", "preferences_url", "name", "greeting")
GREETING_FIELD = "greeting"
"""The whole greeting line ("Hello Ann,"), made from the name by :func:`greeting_line`:
one placeholder, so a reader without a name gets no line at all from the same template."""
TRACK_FIELD = "track"
"""The reader's part of tracked links (:mod:`mailer.render.tracking`): only in the HTML of
a campaign whose list tracks, written by the send engine; the renderer never writes it, and
content that spells it is neutralised like the other fields."""
PLACEHOLDER_RE = re.compile(r"%%(" + "|".join((*FIELDS, TRACK_FIELD)) + r")%%")
SAMPLE_VALUES: Mapping[str, str] = {
    "unsubscribe_url": "https://example.com/unsubscribe/sample-token-0123456789abcdef0123456789",
    "preferences_url": "https://example.com/preferences/sample-token-0123456789abcdef0123456",
    "name": "Sample Reader",
}
"""Values that belong to nobody, for previews and size checks."""
_CONTROLS = {i: " " for i in [*range(32), *range(127, 160)]}


def clean_field(value: str) -> str:
    """A per-reader value as it may appear in a body: control characters become spaces.
    (``isprintable`` first: far cheaper than the translate, and most values pass it.)"""
    return value if value.isprintable() else value.translate(_CONTROLS)


NAME_SLOT = "{name}"
"""Where the name goes in a greeting that is a whole line's shape: a language's default
comes from the catalog that way ('Hello {name},', '{name}，您好：')."""


def greeting_line(greeting: str, name: str) -> str:
    """'Hello Ann,' from the list's greeting and a (cleaned) name; '' when either is empty.
    A greeting with a :data:`NAME_SLOT` is the line's shape and the name goes there; a
    plain word gets the name after it and a comma ('Dear' -> 'Dear Ann,')."""
    name = name.strip()
    if not name or not greeting:
        return ""
    if NAME_SLOT in greeting:
        return greeting.replace(NAME_SLOT, name)
    return f"{greeting} {name},"


def placeholder(name: str) -> str:
    """The placeholder text for a reader field, e.g. ``%%name%%``."""
    if name not in FIELDS and name != TRACK_FIELD:
        raise RenderError(f"unknown reader field {name!r} (known: {', '.join(FIELDS)})")
    return f"%%{name}%%"


def split_template(s: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a rendered body into static chunks and the field names between them.

    ``len(chunks) == len(names) + 1``; joining ``chunks[0], value(names[0]), chunks[1], ...``
    rebuilds the body for one reader.
    """
    parts = PLACEHOLDER_RE.split(s)
    return tuple(parts[0::2]), tuple(parts[1::2])


def splice(chunks: tuple[str, ...], names: tuple[str, ...], values: Mapping[str, str]) -> str:
    out = [chunks[0]]
    for name, chunk in zip(names, chunks[1:], strict=True):
        out.append(values[name])
        out.append(chunk)
    return "".join(out)
