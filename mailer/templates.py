"""Where templates are found: ``MAILER_TEMPLATE_DIR`` first, then the shipped ones.

The shipped templates are the package ``mailer._templates`` (``templates/`` in the checkout,
mapped by setup.py), so a wheel and an editable install find them the same way; nothing
looks for them by a path relative to the code. ``MAILER_TEMPLATE_DIR`` is an operator's
folder with ``email/`` and/or ``web/`` (and ``web/static/``): a file there replaces the
shipped file of the same name, every other name falls back to the shipped one. Both the
email renderer and the reader pages ask :func:`search_path`; /static asks
:func:`override_folder` and serves :data:`SHIPPED_PACKAGE` behind it.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

from mailer.errors import ConfigError

__all__ = ["FOLDERS", "SHIPPED_PACKAGE", "override_folder", "search_path", "shipped_folder"]

SHIPPED_PACKAGE = "mailer._templates"
#: The folders a template directory may hold, shipped or overriding.
FOLDERS = ("email", "web", "web/static")


@functools.cache
def _shipped_root() -> Path:
    root = files(SHIPPED_PACKAGE)
    if not isinstance(root, Path):  # a zipped install: Jinja and StaticFiles need real files
        raise ConfigError(f"the shipped templates ({SHIPPED_PACKAGE}) are not in a folder")
    return root


def shipped_folder(kind: str) -> Path:
    """The shipped ``email``, ``web`` or ``web/static`` folder."""
    return _shipped_root() / _checked(kind)


def override_folder(kind: str, template_dir: str) -> Path | None:
    """``MAILER_TEMPLATE_DIR/<kind>`` when the setting is given and has that folder.

    A setting that names no folder, or a folder with neither ``email/`` nor ``web/`` (a
    likely slip: pointing at ``email/`` itself), is a ConfigError naming the variable.
    """
    if not template_dir:
        return None
    root = Path(template_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"MAILER_TEMPLATE_DIR: not a directory: {template_dir}")
    if not (root / "email").is_dir() and not (root / "web").is_dir():
        raise ConfigError(
            f"MAILER_TEMPLATE_DIR: {template_dir} has neither an email/ nor a web/ folder"
        )
    folder = root / _checked(kind)
    return folder if folder.is_dir() else None


def search_path(kind: str, template_dir: str = "") -> list[Path]:
    """The folders to look in for a ``kind`` template, first match wins."""
    override = override_folder(kind, template_dir)
    shipped = shipped_folder(kind)
    return [override, shipped] if override is not None else [shipped]


def _checked(kind: str) -> str:
    if kind not in FOLDERS:
        raise ValueError(f"no template folder {kind!r} (one of {', '.join(FOLDERS)})")
    return kind
