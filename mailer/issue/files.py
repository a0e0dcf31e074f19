"""Reading an issue from the file (or text) an editor hands us, in either format.

The format is chosen by the file's suffix (``.md`` is Markdown) or detected from the text:
a first line of ``---`` (YAML front matter) means Markdown, anything else is the brief format.
"""

from __future__ import annotations

from pathlib import Path

from mailer.errors import InputError, IssueParseError
from mailer.issue import brief, markdown
from mailer.issue.common import detect_format
from mailer.issue.model import Issue

__all__ = ["MAX_FILE_BYTES", "decode_issue_bytes", "parse_issue_file", "parse_issue_text"]

MAX_FILE_BYTES = 2 * 1024 * 1024


def parse_issue_text(text: str, *, source: str = "issue", fmt: str | None = None) -> Issue:
    """Parse an issue from text; ``fmt`` is "brief", "markdown" or None to auto-detect."""
    if text.startswith("\ufeff"):
        text = text[1:]
    chosen = fmt or detect_format(text)
    parsers = {"brief": brief.parse, "markdown": markdown.parse, "md": markdown.parse}
    if chosen not in parsers:
        raise IssueParseError(
            f"unknown issue format {fmt!r} (use brief or markdown)", source=source
        )
    try:
        return parsers[chosen](text, source=source)
    except IssueParseError:
        raise
    except InputError as err:  # Issue's own checks; the parsers should have caught it first
        raise IssueParseError(str(err), source=source) from err


def parse_issue_file(path: str | Path) -> Issue:
    """Read an issue file (UTF-8, BOM optional) and parse it; ``.md`` files are Markdown."""
    p = Path(path)
    name = str(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise IssueParseError(f"cannot read the file: {err.strerror or err}", source=name) from err
    if len(data) > MAX_FILE_BYTES:
        raise IssueParseError(
            f"the file is over {MAX_FILE_BYTES // (1024 * 1024)} MB; is it really an issue?",
            source=name,
        )
    text = decode_issue_bytes(data, source=name)
    fmt = "markdown" if p.suffix.lower() in (".md", ".markdown") else None
    return parse_issue_text(text, source=name, fmt=fmt)


def decode_issue_bytes(data: bytes, *, source: str = "issue") -> str:
    """UTF-8 (BOM optional) to text; undecodable bytes raise with their line and column."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IssueParseError("the file is UTF-16; save it as UTF-8", line=1, source=source)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        bad = data[err.start : err.start + 1].hex()
        raise IssueParseError(
            f"not valid UTF-8 (byte 0x{bad} at column {col}); save the file as UTF-8",
            line=line,
            source=source,
        ) from err
