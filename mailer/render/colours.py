"""A list's accent colour made readable where the email shows it (WCAG contrast).

An operator picks one colour (``#rrggbb``); the source label, links and the brand band
use it on a white card, and dark mode shows it on a near-black card. A colour too light
for white, or too dark for black, is mixed toward black or white until its contrast
ratio reaches :data:`MIN_CONTRAST` (4.5, WCAG AA for body text), so no choice of accent
can make the source label unreadable in either mode.
"""

from __future__ import annotations

import re

__all__ = ["HEX_COLOUR", "MIN_CONTRAST", "contrast", "readable_on"]

HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
MIN_CONTRAST = 4.5


def _rgb(colour: str) -> tuple[int, int, int]:
    if not HEX_COLOUR.match(colour):
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two colours, 1 (same) to 21 (black on white)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _mix(colour: str, toward: str, share: float) -> str:
    pairs = zip(_rgb(colour), _rgb(toward), strict=True)
    return "#" + "".join(f"{round(c + (t - c) * share):02x}" for c, t in pairs)


def readable_on(colour: str, background: str, minimum: float = MIN_CONTRAST) -> str:
    """``colour`` itself when it reads on ``background``, else the closest mix that does."""
    colour = colour.lower()
    if contrast(colour, background) >= minimum:
        return colour
    toward = "#000000" if _luminance(background) > 0.18 else "#ffffff"
    for step in range(1, 21):
        mixed = _mix(colour, toward, step / 20)
        if contrast(mixed, background) >= minimum:
            return mixed
    return toward
