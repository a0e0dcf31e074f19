"""What the editor should fix before readers see it: the renderer's warnings.

Shown by `mailer issue check`, `mailer send`, the API and the desk; none of them stops a
send (errors do that). The limits are what inboxes and clients do with a message.
"""

from __future__ import annotations

from mailer.issue.model import Issue
from mailer.render.branding import Branding, is_https
from mailer.render.text import LINE_MAX_OCTETS

__all__ = ["GMAIL_CLIP_BYTES", "SUBJECT_MAX", "editor_warnings"]

GMAIL_CLIP_BYTES = 102 * 1024
"""Gmail clips a message whose HTML is larger than about 102 KB ("[Message clipped]"),
hiding the footer with the unsubscribe link (the renderer warns, ``mailer doctor`` fails)."""
SUBJECT_MAX = 78
PREHEADER_MAX = 140
TITLE_SUSPICIOUS = 200
SOURCE_SUSPICIOUS = 60


def editor_warnings(
    issue: Issue, b: Branding, *, subject: str, html_bytes: int, split_urls: int
) -> list[str]:
    """What the editor should see before readers do. ``subject`` is the one chosen for the
    send, ``html_bytes`` the size of the HTML filled for a sample reader, ``split_urls``
    how many text lines had to be cut at the SMTP line limit."""
    out: list[str] = []
    size = html_bytes
    if size > GMAIL_CLIP_BYTES:
        out.append(
            f"HTML is {size / 1024:.0f} KB: Gmail clips messages over 102 KB "
            "(shorten the summaries or split the issue)"
        )
    if len(subject) > SUBJECT_MAX:
        chosen = subject != issue.subject
        out.append(
            f"subject is {len(subject)} characters: inboxes cut it, and over "
            f"{SUBJECT_MAX} it is folded across header lines"
            + ("" if chosen else " (set a shorter one: --subject, or the list's subject template)")
        )
    if not issue.preheader:
        out.append("no preheader: inboxes will show the first words of the body instead")
    elif len(issue.preheader) > PREHEADER_MAX:
        out.append(
            f"preheader is {len(issue.preheader)} characters: inboxes show about 90-{PREHEADER_MAX}"
        )
    seen: dict[str, int] = {}
    for n, item in enumerate(issue.items, start=1):
        label = f"item {n} ({_short(item.title)})"
        if not is_https(item.url):
            out.append(f"{label}: link is not absolute https: {item.url}")
        if item.url in seen:
            out.append(f"{label}: same link as item {seen[item.url]}")
        seen.setdefault(item.url, n)
        if len(item.title) > TITLE_SUSPICIOUS:
            out.append(f"{label}: title is {len(item.title)} characters: is it a summary?")
        if len(item.source) > SOURCE_SUSPICIOUS:
            out.append(f"{label}: source is {len(item.source)} characters: is it a title?")
    for what, url in (
        ("base URL (MAILER_BASE_URL)", b.base_url),
        ("view-in-browser URL", b.archive_url),
        ("subscribe URL", b.subscribe_url),
        ("archive URL", b.archive_index_url),
    ):
        if url and not is_https(url):
            out.append(f"{what} is not absolute https: {url}")
            if what.startswith("base URL"):
                break  # the page links under it say the same thing again: one warning
    if not b.postal_address.strip():
        out.append("no postal address (MAILER_POSTAL_ADDRESS): the law requires one in the footer")
    if split_urls:
        out.append(
            f"{split_urls} line(s) of the plain text were over {LINE_MAX_OCTETS} octets (a huge "
            "URL?) and had to be cut"
        )
    return out


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
