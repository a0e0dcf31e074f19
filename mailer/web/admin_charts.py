"""Server-side SVG charts for the admin dashboard: no CDN, no script, no library.

Each function returns a complete ``<svg>`` element as a string; every piece of text in it
is escaped here, so templates can mark the result safe. Charts carry a ``<title>`` and
``role="img"`` for screen readers, and draw with presentation attributes only (no inline
``style``), which the dashboard's Content-Security-Policy allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Line", "Rule", "bar_chart", "line_chart", "progress_bar"]

_W, _H = 640, 220
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 16, 16, 36
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass(frozen=True)
class Line:
    """One series; ``None`` values are gaps (nothing sent that day)."""

    label: str
    values: Sequence[float | None]
    color: str


@dataclass(frozen=True)
class Rule:
    """A horizontal threshold line, e.g. SES's 5% review level."""

    value: float
    label: str
    color: str


def _fmt_pct(value: float) -> str:
    """0.05 -> "5%", 0.001 -> "0.1%", 0.0125 -> "1.25%"."""
    text = f"{value * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _nice_max(value: float) -> float:
    """A round upper bound for the y axis."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(1 / value))) if value < 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        candidate = step / magnitude
        if candidate >= value:
            return candidate
    return value


def _x_positions(n: int) -> list[float]:
    inner = _W - _PAD_L - _PAD_R
    if n <= 1:
        return [_PAD_L + inner / 2]
    return [_PAD_L + inner * i / (n - 1) for i in range(n)]


def _y(value: float, top: float) -> float:
    inner = _H - _PAD_T - _PAD_B
    return _PAD_T + inner * (1 - min(value, top) / top)


def _axes(title: str, x_labels: Sequence[str], top: float, fmt: object) -> list[str]:
    assert callable(fmt)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="100%" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#ffffff"/>',
    ]
    for i in range(5):
        value = top * i / 4
        y = _y(value, top)
        out.append(
            f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" '
            'stroke="#e5e7eb" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#6b7280" {_FONT}>'
            f"{escape(str(fmt(value)))}</text>"
        )
    xs = _x_positions(len(x_labels))
    step = max(1, len(x_labels) // 6)
    for i, label in enumerate(x_labels):
        if i % step and i != len(x_labels) - 1:
            continue
        out.append(
            f'<text x="{xs[i]:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" fill="#6b7280" '
            f"{_FONT}>{escape(label)}</text>"
        )
    return out


def line_chart(
    title: str,
    x_labels: Sequence[str],
    lines: Sequence[Line],
    rules: Sequence[Rule] = (),
    *,
    floor_max: float = 0.0,
) -> str:
    """Rates over time (as fractions), with threshold rules; the y axis reads in percent."""
    peak = max(
        [floor_max, *(v for line in lines for v in line.values if v is not None)],
        default=floor_max,
    )
    top = _nice_max(max(peak, *(r.value for r in rules)) if rules else peak)
    out = _axes(title, x_labels, top, _fmt_pct)
    placed: list[float] = []
    for rule in sorted(rules, key=lambda r: r.value, reverse=True):
        y = _y(rule.value, top)
        out.append(
            f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" '
            f'stroke="{escape(rule.color)}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        if all(abs(y - other) >= 13 for other in placed):  # the legend names every rule
            placed.append(y)
            out.append(
                f'<text x="{_W - _PAD_R - 4}" y="{y - 4:.1f}" text-anchor="end" '
                f'fill="{escape(rule.color)}" {_FONT}>{escape(rule.label)} '
                f"{_fmt_pct(rule.value)}</text>"
            )
    xs = _x_positions(len(x_labels))
    for line in lines:
        color = escape(line.color)
        segment: list[str] = []
        segments: list[list[str]] = []
        for x, value in zip(xs, line.values, strict=False):
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{x:.1f},{_y(value, top):.1f}")
        if segment:
            segments.append(segment)
        for seg in segments:
            if len(seg) > 1:
                out.append(
                    f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" '
                    'stroke-width="2" stroke-linejoin="round"/>'
                )
            for point in seg:
                cx, cy = point.split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
    out.append(_legend(lines, rules))
    out.append("</svg>")
    return "".join(out)


def _legend(lines: Sequence[Line], rules: Sequence[Rule]) -> str:
    parts = []
    x = float(_PAD_L)
    for line in lines:
        parts.append(
            f'<rect x="{x:.0f}" y="{_H - 12}" width="10" height="10" '
            f'fill="{escape(line.color)}"/>'
            f'<text x="{x + 14:.0f}" y="{_H - 3}" fill="#374151" {_FONT}>'
            f"{escape(line.label)}</text>"
        )
        x += 24 + 6.5 * len(line.label)
    for rule in rules:
        label = f"{rule.label} {_fmt_pct(rule.value)}"
        parts.append(
            f'<line x1="{x:.0f}" y1="{_H - 7}" x2="{x + 14:.0f}" y2="{_H - 7}" '
            f'stroke="{escape(rule.color)}" stroke-width="1.5" stroke-dasharray="4 2"/>'
            f'<text x="{x + 18:.0f}" y="{_H - 3}" fill="#374151" {_FONT}>{escape(label)}</text>'
        )
        x += 30 + 6.5 * len(label)
    return "".join(parts)


def bar_chart(
    title: str, x_labels: Sequence[str], values: Sequence[int], color: str = "#2563eb"
) -> str:
    """Counts per day (e.g. sends, suppressions added)."""
    peak = max(values, default=0)
    top = float(max(4, _nice_count(peak)))
    out = _axes(title, x_labels, top, lambda v: f"{v:.0f}")
    xs = _x_positions(len(x_labels))
    inner = _W - _PAD_L - _PAD_R
    width = max(2.0, inner / max(1, len(x_labels)) * 0.6)
    base = _y(0, top)
    for x, value in zip(xs, values, strict=True):
        if value <= 0:
            continue
        y = _y(value, top)
        out.append(
            f'<rect x="{x - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{base - y:.1f}" fill="{escape(color)}"><title>{value}</title></rect>'
        )
    out.append("</svg>")
    return "".join(out)


def _nice_count(value: int) -> int:
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 2.5, 5, 10):
        candidate = int(step * magnitude)
        if candidate >= value:
            return candidate
    return value


def progress_bar(done: float | None, label: str, *, color: str = "#16a34a") -> str:
    """A small horizontal bar for a campaign's progress (``done`` in 0..1)."""
    share = 0.0 if done is None else max(0.0, min(1.0, done))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 12" width="120" height="12" '
        f'role="img" aria-label="{escape(label)}">'
        '<rect x="0" y="0" width="120" height="12" rx="3" fill="#e5e7eb"/>'
        f'<rect x="0" y="0" width="{120 * share:.1f}" height="12" rx="3" fill="{escape(color)}"/>'
        "</svg>"
    )
