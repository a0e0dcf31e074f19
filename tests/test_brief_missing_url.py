"""The brief parser never loses an item whose URL line is missing (issue 15).

The upstream bug: a 5-item issue whose last URL line was lost read as 4 items and a longer
closing. Every fixture here is written for this test (no upstream text).
"""

from __future__ import annotations

import pytest

from mailer.errors import IssueParseError
from mailer.issue.files import parse_issue_text

HEAD = "Port of Tianjin reopens;Rail freight grows\nTwo stories from the north\n"
INTRO = "Good morning. Today is March 3, 2025, and here is what happened overnight.\n"
ITEM1 = (
    "Port of Tianjin reopens\nCaixin Global\n"
    "The port reopened its container terminals after a week of fog delays, officials said.\n"
    "https://example.com/tianjin\n"
)
ITEM2 = (
    "Rail freight grows\nRailway Gazette\n"
    "Freight volumes on the China-Europe lines rose by a tenth in February, operators said.\n"
    "https://example.com/rail\n"
)
# neither its title (not in the subject) nor its source (seen nowhere else) is known
LOST = "Steel output slows in Hebei\nThe Metals Weekly\nMills cut output for a third month.\n"
CLOSING = (
    "That is all for today. The Brief is written by a small team of editors in three cities.\n"
    "Share it with a colleague who follows northern China.\n"
)


def _refusal(text: str) -> IssueParseError:
    with pytest.raises(IssueParseError) as exc:
        parse_issue_text(text, source="brief.txt", fmt="brief")
    return exc.value


def _line_of(text: str, wanted: str) -> int:
    return [ln.strip() for ln in text.splitlines()].index(wanted) + 1


@pytest.mark.parametrize("closing", [CLOSING, ""], ids=["with-closing", "no-closing"])
def test_last_item_without_url_is_an_error_not_closing_text(closing: str) -> None:
    text = HEAD + INTRO + ITEM1 + ITEM2 + LOST + closing
    err = _refusal(text)
    assert err.line == _line_of(text, "Steel output slows in Hebei")
    assert str(err).startswith(f"brief.txt:{err.line}:")
    assert "no URL line" in str(err) and "after the last URL" in str(err)
    # with its URL the same file is fine, and the closing is only the closing
    fixed = HEAD + INTRO + ITEM1 + ITEM2 + LOST + "https://example.com/steel\n" + closing
    issue = parse_issue_text(fixed, fmt="brief")
    assert [i.title for i in issue.items][-1] == "Steel output slows in Hebei"
    assert issue.closing == tuple(closing.splitlines())


def test_middle_item_without_url_names_the_orphaned_title() -> None:
    text = HEAD + INTRO + ITEM1 + LOST + ITEM2.replace("Rail freight grows\n", "Coal imports dip\n")
    text = text.replace("Rail freight grows", "Coal imports rise")  # not a subject headline
    err = _refusal(text)
    assert err.line == _line_of(text, "Coal imports dip")
    assert "inside the summary of the item above" in str(err) and "no URL line" in str(err)


def test_first_item_without_url_is_refused_too() -> None:
    text = HEAD + INTRO + ITEM1.replace("https://example.com/tianjin\n", "") + ITEM2
    err = _refusal(text)
    assert err.line == _line_of(text, "Rail freight grows")


@pytest.mark.parametrize(
    "closing",
    [
        "Thanks for reading,\nThe editors\n",
        "That is all for today.\nSee you tomorrow.\nThe Brief is written in Hong Kong.\n",
        "Questions? Write to us.\nThe Brief team\n",
        "\u8c22\u8c22\u9605\u8bfb\u3002\n\u660e\u5929\u89c1\uff01\n",
    ],
    ids=["sign-off", "sentences", "short-last", "chinese-punctuation"],
)
def test_closing_prose_and_sign_offs_still_parse(closing: str) -> None:
    issue = parse_issue_text(HEAD + INTRO + ITEM1 + ITEM2 + closing, fmt="brief")
    assert len(issue.items) == 2
    assert issue.closing == tuple(closing.splitlines())


def test_closing_with_an_items_shape_is_refused_with_advice() -> None:
    """A closing written like an item head (short line, short line, longer line) cannot be
    told from a lost item: refused with how to write it so it parses."""
    closing = "Our team\nNorth Desk\nWe read the regional press every morning for you.\n"
    err = _refusal(HEAD + INTRO + ITEM1 + ITEM2 + closing)
    assert "if this is closing text" in str(err)
    ok = closing.replace("Our team\n", "Our team.\n").replace("North Desk\n", "North Desk.\n")
    assert len(parse_issue_text(HEAD + INTRO + ITEM1 + ITEM2 + ok).closing) == 3
