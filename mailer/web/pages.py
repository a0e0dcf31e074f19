"""Rendering the reader pages from templates/web/ (Jinja2, autoescaped), and /static.

Every page extends ``base.html``; the context always has ``base_url`` (MAILER_BASE_URL,
no trailing slash), ``css_url``, ``brand`` (the list's name where there is one), ``lang``
and ``_`` (the page speaks the list's language: pass ``lang``).
Templates and static files are looked up in MAILER_TEMPLATE_DIR's ``web/`` first, then in
the shipped ones (:mod:`mailer.templates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from markupsafe import Markup
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from mailer.config import Settings
from mailer.render.i18n import template_context
from mailer.templates import SHIPPED_PACKAGE, override_folder, search_path
from subscribers.list_settings import DEFAULT_LANGUAGE

DEFAULT_BRAND = "Newsletter"


def mask_email(address: str) -> str:
    """``reader@example.com`` -> ``r•••@example.com``: enough to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    if not domain:
        return "•••"
    return f"{local[:1]}•••@{domain}"


def strong(text: str) -> Markup:
    """``<strong>text</strong>``, escaped, for a value inside a translated sentence."""
    return Markup("<strong>%s</strong>") % text


class Pages:
    """The page templates, bound to one app's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search_path("web", settings.template_dir)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        base = settings.public_base
        self.env.globals.update(
            base_url=base,
            css_url=f"{base}/static/site.css",
            postal_address_lines=[
                line.strip() for line in settings.postal_address.splitlines() if line.strip()
            ],
        )
        self.env.filters["mask_email"] = mask_email
        self.env.globals["strong"] = strong

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """The page in the context's ``lang`` (a list's language; English when none is
        given): ``_`` and ``<html lang>`` come from :mod:`mailer.render.i18n`."""
        lang = str(context.get("lang") or DEFAULT_LANGUAGE)
        ctx = {"brand": DEFAULT_BRAND, "noindex": False, **context, **template_context(lang)}
        return self.env.get_template(name).render(ctx)

    def response(
        self,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        private: bool = False,
    ) -> HTMLResponse:
        """An HTML response; ``private`` pages (signed links, forms) are never cached."""
        body = self.render(name, context or {})
        out = dict(headers or {})
        out.setdefault("Cache-Control", "no-store" if private else "no-cache")
        return HTMLResponse(body, status_code=status, headers=out)


def static_files(settings: Settings) -> StaticFiles:
    """/static: MAILER_TEMPLATE_DIR's ``web/static/`` files first, then the shipped ones."""
    override = override_folder("web/static", settings.template_dir)
    return StaticFiles(directory=override, packages=[(SHIPPED_PACKAGE, "web/static")])
