"""Public URLs of the reader pages, all under ``MAILER_BASE_URL``.

The use cases and the send engine call these to put links into emails; the pages use them
for every link and form action, so a page served behind a proxy never links to the host it
happened to be reached by (no Host-header reflection, no open redirect). It sits low (it
needs only the settings), so every layer that builds a link builds it here, once.
"""

from __future__ import annotations

import re

from mailer.config import Settings

#: The archive addresses an issue by the first 16 hex characters of Campaign.issue_key.
ARCHIVE_KEY_LEN = 16
_KEY = re.compile(r"^[0-9a-f]{16,64}$")


def archive_key(issue_key: str) -> str:
    """The short key of an issue in archive URLs; ValueError if ``issue_key`` is not hex."""
    key = issue_key.strip().lower()
    if not _KEY.match(key):
        raise ValueError(f"issue key must be 16 to 64 hex characters, got {issue_key!r}")
    return key[:ARCHIVE_KEY_LEN]


def archive_url(settings: Settings, list_slug: str, issue_key: str) -> str:
    """``{base}/archive/{list}/{key16}``: the web edition, the email's "view in browser"."""
    return f"{settings.public_base}/archive/{list_slug}/{archive_key(issue_key)}"


def archive_index_url(settings: Settings, list_slug: str) -> str:
    """``{base}/archive/{list}``: every sent issue of a list, newest first."""
    return f"{settings.public_base}/archive/{list_slug}"


def feed_url(settings: Settings, list_slug: str) -> str:
    """``{base}/archive/{list}/feed.xml``: the Atom feed of a list."""
    return f"{settings.public_base}/archive/{list_slug}/feed.xml"


def subscribe_url(settings: Settings, list_slug: str) -> str:
    """``{base}/subscribe/{list}``: the subscribe form (also the target of the embed)."""
    return f"{settings.public_base}/subscribe/{list_slug}"


def page_url(settings: Settings, path: str) -> str:
    """An absolute URL for a path of this app (``path`` starts with ``/``)."""
    if not path.startswith("/") or path.startswith("//"):
        raise ValueError(f"not an app path: {path!r}")
    return settings.public_base + path
