"""Turn a campaign's rendered bodies into an inline SES template (Handlebars syntax).

SES bulk sending personalizes server-side: the campaign's HTML, text and subject still hold
the renderer's placeholders (``mailer.render.compiler.split_template`` splits them into literal
chunks and placeholder names); here each placeholder becomes a Handlebars variable.

* HTML uses ``{{var}}``: SES HTML-escapes the value, as the per-reader fill does.
* Text and subject use ``{{{var}}}``: the value goes in verbatim.
* A literal ``{{`` in the issue is written ``\\{{`` so Handlebars prints it as is.
* Placeholder names that are not plain identifiers get generated variable names, so any
  name the renderer allows survives the trip.

The result is built once per campaign; per reader only the JSON of the values is made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mailer.errors import RejectedError
from mailer.render.compiler import clean_field

#: ``split(s) -> (chunks, names)`` with ``len(chunks) == len(names) + 1``.
SplitFn = Callable[[str], tuple[Sequence[str], Sequence[str]]]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Reader fields that may be absent (rendered empty), as in ``RenderedIssue.personalize``.
OPTIONAL_FIELDS = frozenset({"name"})
_RESERVED = frozenset({"this", "else", "true", "false", "null", "undefined", "root"})


@dataclass(frozen=True, slots=True)
class SesTemplate:
    """Inline template content plus the placeholder -> Handlebars variable mapping."""

    subject: str
    html: str
    text: str
    variables: Mapping[str, str]

    def template_data(
        self, fields: Mapping[str, str], optional: frozenset[str] = OPTIONAL_FIELDS
    ) -> str:
        """The per-reader ``ReplacementTemplateData`` JSON.

        Like ``RenderedIssue.personalize``: control characters become spaces, an ``optional``
        field may be missing (empty), any other missing value fails this reader."""
        data: dict[str, str] = {}
        missing: list[str] = []
        for name, var in self.variables.items():
            value = fields.get(name)
            if value is None:
                if name not in optional:
                    missing.append(name)
                value = ""
            data[var] = clean_field(value)
        if missing:
            raise RejectedError(
                f"no value for placeholder(s) {', '.join(sorted(missing))} of the SES template"
            )
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _literal(chunk: str, before_placeholder: bool) -> str:
    out = chunk.replace("{{", "\\{{")
    if before_placeholder and out.endswith("\\"):
        out += "\\"  # "\\{{var}}" = a literal backslash, then the variable
    return out


def build_template(subject: str, html: str, text: str, split: SplitFn) -> SesTemplate:
    """Translate the three parts once; shares one variable mapping across them."""
    variables: dict[str, str] = {}

    def var_for(name: str) -> str:
        var = variables.get(name)
        if var is None:
            ok = _IDENT.fullmatch(name) and name not in _RESERVED and not name.startswith("v_")
            var = name if ok else f"v_{len(variables)}"
            variables[name] = var
        return var

    def convert(source: str, *, escape: bool) -> str:
        chunks, names = split(source)
        if len(chunks) != len(names) + 1:
            raise ValueError("split_template must return one more chunk than names")
        parts: list[str] = []
        for i, name in enumerate(names):
            parts.append(_literal(chunks[i], True))
            var = var_for(name)
            parts.append(f"{{{{{var}}}}}" if escape else f"{{{{{{{var}}}}}}}")
        parts.append(_literal(chunks[-1], False))
        return "".join(parts)

    return SesTemplate(
        subject=convert(subject, escape=False),
        html=convert(html, escape=True),
        text=convert(text, escape=False),
        variables=variables,
    )
