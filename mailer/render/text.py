"""Plain text for the text/plain part: filled to a width readers' clients show well, and
never a line SMTP would refuse.

Widths are display columns: wide (CJK) characters count two, marks and joiners none, and
closing punctuation stays with what it closes (no line starts with "，" or ")"). URLs are
never broken, so they stay clickable.
"""

from __future__ import annotations

import unicodedata

__all__ = ["LINE_MAX_OCTETS", "TEXT_WIDTH", "limit_line_octets", "wrap_text"]

TEXT_WIDTH = 72
LINE_MAX_OCTETS = 998
_OPENING = frozenset("“‘（「『【〔〈《([{")
_CLOSING = frozenset("，。、；：！？）」』】〕〉》”’…・,.;:!?)]}")


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Fill text to ``width`` display columns; URLs are never broken.

    Wide (CJK) characters count two columns and may break between characters; a word
    longer than a line (not a URL) is cut at the width; no-break spaces hold.
    """
    text = str(text)
    lines: list[str] = []
    line = ""
    line_w = 0
    for token, glue in _tokens(text, width):
        tok_w = _width(token)
        sep = " " if glue and line else ""
        if line and line_w + len(sep) + tok_w > width:
            lines.append(line)
            line, line_w = token, tok_w
        else:
            line += sep + token
            line_w += len(sep) + tok_w
    if line or not lines:
        lines.append(line)
    return "\n".join(lines)


def hang(text: str, prefix: str, width: int = TEXT_WIDTH) -> str:
    """``prefix`` then ``text`` filled to ``width``, later lines indented under the text
    ("1. A long headline" / "   that goes on"): a numbered list that stays readable."""
    pad = " " * _width(prefix)
    lines = wrap_text(text, max(width - len(pad), 20)).split("\n")
    return prefix + lines[0] + "".join("\n" + pad + line for line in lines[1:])


def _tokens(text: str, width: int) -> list[tuple[str, bool]]:
    """(token, space_before) pairs: words, single wide characters, and cut-up long words."""
    out: list[tuple[str, bool]] = []
    for word in text.split(" "):
        if not word:
            continue
        if "://" in word:
            out.append((word, True))
            continue
        segments: list[str] = []
        narrow = False  # the last segment is a run of narrow characters still growing
        opening = ""  # opening marks wait for what they open
        for cluster in _clusters(word):
            if cluster in _OPENING:
                opening += cluster
            elif cluster[0] in _CLOSING and segments and not opening:
                segments[-1] += cluster  # closing marks stay with what they close
            elif _width(cluster) == 2:
                segments.append(opening + cluster)
                opening, narrow = "", False
            elif narrow and not opening:
                segments[-1] += cluster
            else:
                segments.append(opening + cluster)
                opening, narrow = "", True
        if opening:
            segments.append(opening)
        for i, seg in enumerate(segments):
            out.extend(_cut(seg, width, glue=i == 0))
    return out


def _cut(run: str, width: int, glue: bool) -> list[tuple[str, bool]]:
    if _width(run) <= width:
        return [(run, glue)]
    pieces: list[tuple[str, bool]] = []
    piece = ""
    for cluster in _clusters(run):
        if piece and _width(piece + cluster) > width:
            pieces.append((piece, glue if not pieces else False))
            piece = ""
        piece += cluster
    if piece:
        pieces.append((piece, glue if not pieces else False))
    return pieces


def _is_extend(ch: str) -> bool:
    o = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc", "Cf")
        or 0xFE00 <= o <= 0xFE0F
        or 0x1F3FB <= o <= 0x1F3FF
        or 0xE0020 <= o <= 0xE007F
    )


def _clusters(s: str) -> list[str]:
    """Rough grapheme clusters: marks, joiners, selectors and flag pairs stay together."""
    out: list[str] = []
    join = False
    for ch in s:
        regional = 0x1F1E6 <= ord(ch) <= 0x1F1FF
        if out and (
            join
            or _is_extend(ch)
            or (regional and len(out[-1]) == 1 and 0x1F1E6 <= ord(out[-1]) <= 0x1F1FF)
        ):
            out[-1] += ch
        else:
            out.append(ch)
        join = ch == "\u200d"
    return out


def _width(s: str) -> int:
    w = 0
    for ch in s:
        if _is_extend(ch) or unicodedata.combining(ch):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


def limit_line_octets(text: str) -> tuple[str, int]:
    """Cut any line over 998 octets (only a giant URL can be one); return how many were."""
    out: list[str] = []
    cut = 0
    for line in text.split("\n"):
        if len(line.encode("utf-8")) <= LINE_MAX_OCTETS:
            out.append(line)
            continue
        cut += 1
        piece = ""
        for ch in line:
            if len((piece + ch).encode("utf-8")) > LINE_MAX_OCTETS:
                out.append(piece)
                piece = ""
            piece += ch
        out.append(piece)
    return "\n".join(out), cut
