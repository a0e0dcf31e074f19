"""Where the issue's links point, decided in one place.

Every link to an item that a template writes comes from :func:`item_href` (the title, the
"Read more" link, the plain-text URL), and the headline index points at :func:`item_anchor`
inside the same document. A change to how item links look (a tracked redirect, a campaign
parameter) is made here once and reaches every template.
"""

from __future__ import annotations

from mailer.issue.model import Item

__all__ = ["item_anchor", "item_href"]


def item_href(item: Item, position: int) -> str:
    """The link of item number ``position`` (1-based): today the item's URL as given."""
    del position  # part of the seam: a tracked link needs to know which item it is
    return item.url


def item_anchor(position: int) -> str:
    """The id of item number ``position`` in the HTML, the target of the headline index."""
    return f"item-{position}"
