"""Issue parsing: our fixtures field by field, the shared sample if present, every refusal."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import pytest

from mailer.errors import InputError, IssueParseError
from mailer.issue.brief import format_brief
from mailer.issue.common import strip_tracking
from mailer.issue.files import decode_issue_bytes, parse_issue_file, parse_issue_text
from mailer.issue.markdown import declared_list, format_markdown, inline_text
from mailer.issue.model import Issue, Item

FIXTURES = Path(__file__).parent / "fixtures" / "issues"
SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def expect(issue: Issue, **fields: object) -> None:
    """Assert every top-level field, then every item field by field, with clear messages."""
    items = fields.pop("items")
    for name, want in fields.items():
        assert getattr(issue, name) == want, f"{name}: {getattr(issue, name)!r} != {want!r}"
    assert isinstance(items, list)
    assert len(issue.items) == len(items), [i.title for i in issue.items]
    for n, (got, want_item) in enumerate(zip(issue.items, items, strict=True), start=1):
        title, source, paragraphs, url = want_item
        assert got.title == title, f"item {n} title"
        assert got.source == source, f"item {n} source"
        assert got.paragraphs == paragraphs, f"item {n} paragraphs"
        assert got.url == url, f"item {n} url"


# -- our fixtures ------------------------------------------------------------------------


def test_brief_basic_fixture() -> None:
    issue = parse_issue_file(FIXTURES / "brief-basic.txt")
    expect(
        issue,
        subject=(
            "Beijing unveils rural broadband plan; Shenzhen drone makers face new export rules"
        ),
        preheader="Tea exporters in Fujian turn to livestreams ☕",
        date=datetime.date(2025, 3, 3),
        intro=(
            "Good morning and welcome to this edition of The Harbour Dispatch. Today is March 3, "
            "2025. Every weekday we gather reporting on China’s economy, politics and technology "
            "from newsrooms around the world and condense it into a few minutes of reading.",
        ),
        items=[
            (
                "Beijing unveils rural broadband plan",
                "Caixin Global",
                (
                    "The State Council has published a three-year programme to bring fibre "
                    "connections to every administrative village in the western provinces, with "
                    "local governments expected to cover a third of the cost. Officials said the "
                    "plan would lower the price of online services for farmers and small "
                    "workshops, while analysts questioned whether county budgets, already "
                    "stretched by debt repayments, could carry their share.",
                ),
                "https://www.caixinglobal.com/2025-03-03/beijing-unveils-rural-broadband-plan-102300001.html",
            ),
            (
                "Shenzhen drone makers face new export rules",
                "Reuters",
                (
                    "Manufacturers in Shenzhen (深圳) must now obtain a licence before shipping "
                    "several categories of long-range drones and their flight controllers abroad. "
                    "Industry groups said the paperwork could add weeks to delivery times, "
                    "although the commerce ministry insisted the rules only formalise checks that "
                    "were already in place.",
                ),
                # utm_* removed, the other parameter and the fragment kept as given
                "https://www.reuters.com/world/china/shenzhen-drone-export-rules-2025-03-03/?ref=brief#top",
            ),
            (
                "Tea exporters in Fujian turn to livestreams ☕",
                "South China Morning Post",
                (
                    "Growers around Anxi county have started selling oolong directly to buyers in "
                    "Southeast Asia through nightly livestreams, cutting out the wholesalers who "
                    "once set prices for the whole valley. “We used to wait for the traders to "
                    "call,” one grower said. “Now the customers call us.”",
                    "The shift has not been smooth. Logistics firms report that small parcels of "
                    "tea are often held at customs for longer than the leaves stay fresh, and "
                    "several sellers have been fined for mislabelling the origin of blended "
                    "products as ‘single estate’.",
                    "Provincial officials have promised a dedicated export channel for "
                    "agricultural e-commerce by the summer, and a trade fair in Xiamen next month "
                    "will include a session on cross-border payments.",
                ),
                "https://www.scmp.com/economy/china-economy/article/3300001/tea-exporters-fujian-livestreams",
            ),
            (
                "“安全第一”: factory inspectors step up visits in Guangdong",
                "The Diplomat",
                (
                    "Labour inspectors in Dongguan and Foshan carried out more than two thousand "
                    "unannounced visits in February, according to provincial figures, after a "
                    "series of warehouse fires late last year. 🚧 Workers’ groups welcomed the "
                    "campaign but said fines remain too small to change behaviour at the largest "
                    "sites.",
                ),
                "https://thediplomat.com/2025/03/factory-inspections-guangdong/",
            ),
            (
                "Shipping rates ease as Ningbo port clears backlog",
                "Nikkei Asia",
                (
                    "Container rates from Ningbo to northern Europe fell for a third straight week "
                    "as the port worked through a backlog of vessels delayed by fog in late "
                    "February. Freight forwarders expect rates to stabilise once the spring "
                    "export season begins.",
                ),
                "https://asia.nikkei.com/Business/Transportation/Ningbo-port-clears-backlog?page=2&section=shipping",
            ),
        ],
        closing=(
            "The Harbour Dispatch is written by a small team of editors who read widely so that "
            "you do not have to. Reply to this email to tell us what we missed.",
            "Find every past edition at www.harbourdispatch.example and share it with a colleague.",
        ),
    )


def test_brief_tricky_fixture() -> None:
    """Subject does not name item 1 (fallback), a title that is a source's name, blank lines,
    indented and trailing-space lines, http link, utm in the middle of a query, no final
    newline, a URL inside a closing sentence."""
    raw = (FIXTURES / "brief-tricky.txt").read_bytes()
    assert not raw.endswith(b"\n") and b"  \n" in raw and b"\n\t" in raw
    issue = parse_issue_file(FIXTURES / "brief-tricky.txt")
    expect(
        issue,
        subject=(
            "Port of Tianjin opens hydrogen bunkering pilot; “Nikkei Asia” hires new China "
            "bureau chief"
        ),
        preheader="Hydrogen ships, moon dust and a newsroom shuffle",
        date=None,
        intro=(
            "Welcome back to The Harbour Dispatch. This week we are trying a slightly longer "
            "introduction, because several readers have asked how we choose the stories that "
            "appear here, and the answer deserves more than one sentence.",
            "We start from about two hundred articles a day, drop anything behind a paywall we "
            "cannot summarise fairly, and then pick the pieces that explain a change rather than "
            "repeat it.",
        ),
        items=[
            (
                "Lunar probe samples go on public display in Hefei",
                "Xinhua",
                (
                    "A small vial of soil returned by the Chang’e-6 mission went on display at the "
                    "University of Science and Technology of China, drawing long queues of school "
                    "groups.",
                    "More to come.",
                ),
                "http://www.news.cn/english/20250305/lunar-samples-hefei/c.html",
            ),
            (
                "Port of Tianjin opens hydrogen bunkering pilot",
                "Bloomberg",
                (
                    "Tianjin has begun a pilot programme that lets ships refuel with "
                    "hydrogen-derived ammonia at a dedicated berth, the first such facility in a "
                    "Chinese port. The operator said that three coastal freighters had signed up "
                    "for trial runs, and that it expects to publish safety data at the end of the "
                    "year.",
                ),
                "https://www.bloomberg.com/news/articles/2025-03-05/tianjin-hydrogen-bunkering?srnd=asia&cmpid=BBD030525_ASIA#xj4y7vzkg",
            ),
            (
                "“Nikkei Asia” hires new China bureau chief",
                "Nikkei Asia",
                (
                    "The Japanese-owned publication has appointed a veteran correspondent, "
                    "previously based in Taipei, to lead its reporting team in Beijing. The move "
                    "follows the departure of two senior editors last autumn.",
                ),
                "https://www.ft.com/content/0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            ),
            (
                "Nikkei Asia",
                "Financial Times",
                (
                    "Yes, the headline of this item is just the name of a publication: a report "
                    "about a publisher that is itself a news outlet.",
                ),
                "https://www.ft.com/content/11111111-2222-3333-4444-555555555555?a=1&b=%E4%B8%AD%E6%96%87",
            ),
        ],
        closing=(
            "That is all for today. If a link does not open, try the version at "
            "https://harbourdispatch.example/archive instead.",
            "Thanks for reading.",
        ),
    )


def test_brief_crlf_bom_fixture() -> None:
    raw = (FIXTURES / "brief-crlf-bom.txt").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw and not raw.endswith(b"\n")
    issue = parse_issue_file(FIXTURES / "brief-crlf-bom.txt")
    expect(
        issue,
        subject=(
            "上海 opens its first night market for e-bikes 🛵; Chongqing tunnels get 5G coverage"
        ),
        preheader="Two short stories from the cities this Friday",
        date=datetime.date(2025, 3, 7),
        intro=(
            "Hello again. Today is Friday, March 7, 2025, and this is a short edition while our "
            "editors travel.",
        ),
        items=[
            (
                "上海 opens its first night market for e-bikes 🛵",
                "Sixth Tone",
                (
                    "Vendors in Shanghai’s Minhang district now sell batteries, helmets and "
                    "repairs from stalls that open at dusk, after the city relaxed rules on street "
                    "trading for licensed e-bike dealers.",
                ),
                "https://www.sixthtone.com/news/1016000",
            ),
            (
                "Chongqing tunnels get 5G coverage",
                "Global Times",
                (
                    "All of the city’s road tunnels longer than one kilometre now carry 5G "
                    "signals, the municipal communications bureau said on Thursday.",
                    "Drivers had complained for years that navigation apps lost their position in "
                    "the mountain city’s tunnels.",
                ),
                "https://www.globaltimes.cn/page/202503/1330000.shtml",
            ),
        ],
        closing=("See you on Monday.",),
    )
    # the same text with LF, no BOM, parses to the same issue
    lf = raw.decode("utf-8-sig").replace("\r\n", "\n")
    assert parse_issue_text(lf) == issue


def test_markdown_fixture() -> None:
    path = FIXTURES / "issue.md"
    issue = parse_issue_file(path)
    expect(
        issue,
        subject="Guangzhou metro adds driverless line; Yunnan coffee goes premium",
        preheader="Plus a new archive of Republican-era maps",
        date=datetime.date(2025, 3, 10),
        intro=(
            "Welcome to a hand-written edition of The Harbour Dispatch. This paragraph spans two "
            "lines in the file.",
            "We wrote this one ourselves — no feeds involved. Tell us what you think at our "
            "feedback page (https://harbourdispatch.example/feedback).",
        ),
        items=[
            (
                "Guangzhou metro adds driverless line",
                "Yangcheng Evening News",
                (
                    "Line 22 now runs without drivers for its full length, after a year of trials "
                    "with staff on board. The operator says trains will run every three minutes "
                    "at peak.",
                ),
                "https://www.ycwb.com/metro/line-22-driverless",
            ),
            (
                "Yunnan coffee goes premium",
                "Caixin Global",
                (
                    "Growers in Pu’er are selling washed arabica to specialty roasters in Shanghai "
                    "at twice the price paid by commodity traders.",
                    "Some estates now ship directly to cafés in Seoul and Tokyo.",
                ),
                "https://www.caixinglobal.com/2025-03-10/yunnan-coffee-premium-102300123.html",
            ),
            (
                "民国地图 archive goes online",
                "The Paper",
                (
                    "A library in Nanjing has scanned 3,000 maps from the 1912–1949 period and put "
                    "them online with search by place name.",
                ),
                "https://www.thepaper.cn/newsDetail_forward_30000000",
            ),
        ],
        closing=("That is all for this week. Forward this to a friend who likes maps.",),
    )
    assert declared_list(path.read_text("utf-8")) == "harbour-dispatch"
    assert declared_list((FIXTURES / "brief-basic.txt").read_text("utf-8")) is None


@pytest.mark.parametrize("name", ["brief-basic.txt", "brief-tricky.txt", "brief-crlf-bom.txt"])
def test_brief_and_markdown_writers_read_back(name: str) -> None:
    issue = parse_issue_file(FIXTURES / name)
    assert parse_issue_text(format_markdown(issue)) == issue
    again = parse_issue_text(format_brief(issue, blank_lines=True, newline="\r\n"))
    # the brief format has no date line: the date survives only through the intro sentence
    assert again == issue


# -- the shared sample (only where the checkout sits beside the shared folder) --------------------


@pytest.mark.skipif(not SHARED_SAMPLES.is_dir(), reason="no shared samples next to the repo")
def test_shared_samples_parse_to_their_structure() -> None:
    """Checked against the raw lines of the file, so no sample text lives in this repo."""
    files = sorted(SHARED_SAMPLES.glob("*.txt"))
    assert files
    for path in files:
        issue = parse_issue_file(path)
        lines = [ln.strip() for ln in path.read_text("utf-8-sig").splitlines() if ln.strip()]
        url_rows = [n for n, ln in enumerate(lines) if re.match(r"^https?://\S+$", ln)]
        assert len(issue.items) == len(url_rows)
        # the subject names the first headlines; the teaser is line 2
        assert issue.subject == "; ".join(h.strip() for h in lines[0].split(";") if h.strip())
        assert issue.preheader == lines[1]
        assert issue.items[0].title in issue.subject
        start = 2 + len(issue.intro)
        assert issue.intro == tuple(lines[2:start])
        for item, url_row in zip(issue.items, url_rows, strict=True):
            assert lines[start] == item.title
            assert lines[start + 1] == item.source
            assert item.paragraphs == tuple(lines[start + 2 : url_row])
            assert lines[url_row].startswith(item.url.split("?")[0])
            assert "utm_" not in item.url and item.url.startswith("https://")
            start = url_row + 1
        assert issue.closing == tuple(lines[start:])
        if m := re.search(r"(\d{4})-(\d{2})-(\d{2})", path.name):
            assert issue.date == datetime.date(*map(int, m.groups()))
        if path.name == "china-brief-2025-01-30.txt":
            assert [len(i.paragraphs) for i in issue.items] == [1, 1, 1, 1, 1, 1, 3, 3, 1]
            assert (len(issue.intro), len(issue.closing)) == (1, 3)


# -- refusals ----------------------------------------------------------------------------

GOOD_ITEM = "Title one\nSource\nA summary paragraph that is long enough.\nhttps://example.com/1\n"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", None, "empty"),
        (";  ;\nTeaser\n" + GOOD_ITEM, 1, "subject is empty"),
        ("Title one\n", None, "no teaser"),
        ("Title one\nTeaser\nIntro only, no URL anywhere.\n", None, "no items"),
        ("Title one\nTeaser\nTitle one\nSource\nSummary.\nftp://example.com/file\n", 6, "http(s)"),
        ("Title one\nTeaser\nTitle one\nSource\nSummary.\njavascript:alert(1)\n", 6, "http(s)"),
        ("Title one\nTeaser\nTitle one\nSource\nSummary.\nhttps:///nohost\n", 6, "no host"),
        ("Title one\nTeaser\nTitle one\nSource\nSummary.\nhttps://ex.com:99999/\n", 6, "malformed"),
        ("Title one\nTeaser\nTitle one\nhttps://example.com/1\n", 4, "title, a source"),
        (
            "Title one\nTeaser\n" + GOOD_ITEM + "https://example.com/2\n",
            7,
            "without a title",
        ),
        ("Title one\nTeaser\n" + GOOD_ITEM + "Lone line\nhttps://example.com/2\n", 8, "source"),
        ("https://example.com\nTeaser\n" + GOOD_ITEM, 1, "subject"),
        ("Title one\nhttps://example.com/x\n" + GOOD_ITEM, 2, "teaser"),
        ("Title one\nTeaser\nbad\x00byte\n" + GOOD_ITEM, 3, "U+0000"),
        ("Title one\nTeaser\nToday is February 30, 2025.\n" + GOOD_ITEM, 3, "not a date"),
    ],
)
def test_brief_refusals_name_the_line(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(IssueParseError) as exc:
        parse_issue_text(text, source="x.txt", fmt="brief")
    assert exc.value.line == line, str(exc.value)
    assert fragment in str(exc.value)
    assert str(exc.value).startswith("x.txt:" + (f"{line}:" if line else ""))


def test_brief_missing_url_of_last_item_named_in_subject() -> None:
    text = (
        "Title one;Title two\nTeaser\n"
        + GOOD_ITEM
        + "Title two\nAnother Source\nIts summary, whose URL line was lost.\n"
        + "Closing words.\n"
    )
    with pytest.raises(IssueParseError) as exc:
        parse_issue_text(text)
    assert exc.value.line == 7 and "no URL line" in str(exc.value)


def test_brief_missing_url_in_the_middle_with_known_source() -> None:
    text = (
        "Title one\nTeaser\n"
        + GOOD_ITEM
        + "Item two\nSource B\nSummary of item two, whose URL was lost.\n"
        + "Item three\nSource\nSummary of item three.\nhttps://example.com/3\n"
    )
    with pytest.raises(IssueParseError) as exc:
        parse_issue_text(text)
    assert exc.value.line == 10 and "no URL line" in str(exc.value)


def test_brief_intro_that_cannot_be_told_from_the_first_item() -> None:
    long = "x" * 300
    text = f"Unrelated subject\nTeaser\n{long}\n{long}\n{long}\nhttps://example.com/1\n"
    with pytest.raises(IssueParseError) as exc:
        parse_issue_text(text)
    assert exc.value.line == 3 and "subject line" in str(exc.value)


MD_HEAD = "---\nsubject: S\n---\n"
MD_ITEM = "## T\nsource: Src\n\nSummary.\n\nhttps://example.com/t\n"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("---\nsubject: S\n", 1, "never closed"),
        ("---\nsubject: [unclosed\n---\n" + MD_ITEM, 2, "not valid YAML"),
        ("---\n- a\n- b\n---\n" + MD_ITEM, 2, "key: value"),
        ("---\nsubjet: S\n---\n" + MD_ITEM, 2, "unknown front matter key 'subjet'"),
        ("---\npreheader: P\n---\n" + MD_ITEM, 1, "no subject"),
        ("---\nsubject: ' ; '\n---\n" + MD_ITEM, 2, "subject is empty"),
        ("---\nsubject: [1, 2]\n---\n" + MD_ITEM, 2, "must be text"),
        ("---\nsubject: S\ndate: 2025-02-30\n---\n" + MD_ITEM, 1, "not valid YAML"),
        ("---\nsubject: S\ndate: March 3\n---\n" + MD_ITEM, 3, "YYYY-MM-DD"),
        ("---\nsubject: S\ndate: 2025-03-03 10:00:00\n---\n" + MD_ITEM, 3, "a day"),
        (MD_HEAD + "Intro only.\n", None, "no items"),
        (MD_HEAD + "### Small\n" + MD_ITEM, 4, "'## Title'"),
        (MD_HEAD + "---\n" + MD_ITEM, 4, "before the first item"),
        (MD_HEAD + MD_ITEM + "---\nclosing\n## Late\n", 12, "after the closing"),
        (MD_HEAD + MD_ITEM + "---\n---\n", 11, "second closing"),
        (MD_HEAD + "## T\nSummary.\nhttps://example.com/t\n", 4, "no 'source: ...' line"),
        (MD_HEAD + "## T\nsource: S\nhttps://example.com/t\n", 4, "no summary"),
        (MD_HEAD + "## T\nsource: S\n\nSummary.\n", 4, "no link"),
        (MD_HEAD + "## T\nsource: S\nsource: S2\n", 6, "second source"),
        (MD_HEAD + "## T\nsource:\n", 5, "source line is empty"),
        (MD_HEAD + MD_ITEM + "<https://example.com/again>\n", 10, "one link line"),
        (MD_HEAD + "## T\nsource: S\nText.\n[x](ftp://example.com/f)\n", 7, "http(s)"),
        (MD_HEAD + "##   \n", 4, "without a title"),
    ],
)
def test_markdown_refusals_name_the_line(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(IssueParseError) as exc:
        parse_issue_text(text, source="x.md")
    assert exc.value.line == line, str(exc.value)
    assert fragment in str(exc.value)


def test_markdown_inline_to_plain_text() -> None:
    assert inline_text("a *b* **c** `d` \\*e\\* &amp; <b>f</b>") == "a b c d *e* & f"
    assert (
        inline_text("see [the site](https://x.example/a)") == "see the site (https://x.example/a)"
    )
    assert inline_text("<https://x.example/>") == "https://x.example/"
    assert inline_text("mail <me@x.example>") == "mail me@x.example"


def test_markdown_link_forms_and_list_key() -> None:
    text = (
        "---\nsubject: S\nlist: brief\n---\n"
        "## A\nsource: S\nOne.\n[Read more](https://example.com/a_(b))\n"
        "## B\nsource: S\nTwo.\n<https://example.com/b?x=1&utm_medium=m>\n"
    )
    issue = parse_issue_text(text)
    assert [i.url for i in issue.items] == [
        "https://example.com/a_(b)",
        "https://example.com/b?x=1",
    ]
    assert issue.preheader == "" and issue.date is None
    assert declared_list(text) == "brief"
    with pytest.raises(IssueParseError, match="list slug"):
        declared_list("---\nsubject: S\nlist: two words\n---\n")


def test_format_detection_and_forcing() -> None:
    md = MD_HEAD + MD_ITEM
    assert parse_issue_text(md).items[0].title == "T"
    # forced to the brief format the same text is read line by line: '---' is the subject
    forced = parse_issue_text(md, fmt="brief")
    assert forced.subject == "---" and forced.items[0].title == "---"
    with pytest.raises(IssueParseError, match="unknown issue format"):
        parse_issue_text(md, fmt="docx")
    assert parse_issue_text("\ufeff" + md) == parse_issue_text(md)


# -- files and bytes ---------------------------------------------------------------------


def test_undecodable_bytes_name_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"Subject\nTeaser\nIntro with a bad \xff byte\n")
    with pytest.raises(IssueParseError) as exc:
        parse_issue_file(path)
    assert exc.value.line == 3 and "0xff at column 18" in str(exc.value)
    assert exc.value.source == str(path)


def test_utf16_and_missing_and_huge_files(tmp_path: Path) -> None:
    with pytest.raises(IssueParseError, match="UTF-16"):
        decode_issue_bytes("Subject".encode("utf-16"))
    with pytest.raises(IssueParseError, match="cannot read"):
        parse_issue_file(tmp_path / "missing.txt")
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (2 * 1024 * 1024 + 1))
    with pytest.raises(IssueParseError, match="over 2 MB"):
        parse_issue_file(big)


def test_md_extension_means_markdown(tmp_path: Path) -> None:
    path = tmp_path / "plain.md"
    path.write_text("Subject\nTeaser\n" + GOOD_ITEM, "utf-8")
    with pytest.raises(IssueParseError, match="front matter"):
        parse_issue_file(path)


# -- the Issue value ---------------------------------------------------------------------


def test_snapshot_round_trip_and_key() -> None:
    issue = parse_issue_file(FIXTURES / "brief-basic.txt")
    snap = json.loads(json.dumps(issue.to_dict()))
    assert Issue.from_dict(snap) == issue
    assert Issue.from_dict(snap).key() == issue.key()
    assert re.fullmatch(r"[0-9a-f]{64}", issue.key())
    other = parse_issue_file(FIXTURES / "brief-tricky.txt")
    assert other.key() != issue.key()
    assert Issue.from_dict(other.to_dict()) == other  # date None round-trips too


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(date=20250303), "date"),
        (lambda d: d.update(date="2025-13-01"), "bad date"),
        (lambda d: d.update(items="x"), "items must be a list"),
        (lambda d: d.update(items=[]), "at least one item"),
        (lambda d: d["items"][0].update(url="ftp://x/"), "not http"),
        (lambda d: d["items"][0].update(paragraphs=[]), "no summary"),
        (lambda d: d["items"][0].update(title=None), "title must be text"),
        (lambda d: d.update(subject="two\nlines"), "line break"),
        (lambda d: d.update(intro=["ok", ""]), "empty paragraph"),
    ],
)
def test_bad_snapshots_are_refused(mutate: object, fragment: str) -> None:
    snap = parse_issue_file(FIXTURES / "brief-crlf-bom.txt").to_dict()
    assert callable(mutate)
    mutate(snap)
    with pytest.raises(InputError, match=re.escape(fragment)):
        Issue.from_dict(snap)


def test_item_and_issue_validate_on_construction() -> None:
    item = Item("T", "S", ("P",), "https://example.com/")
    with pytest.raises(InputError):
        Item("T", "S", ("P",), "example.com")
    with pytest.raises(InputError):
        Issue("S", "", datetime.datetime(2025, 1, 1), (), (item,), ())  # type: ignore[arg-type]
    assert Issue("S", "", None, (), (item,), ()).items == (item,)


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://x.example/a?utm_source=rss", "https://x.example/a"),
        ("https://x.example/a?b=1&UTM_Medium=e&c=2#f", "https://x.example/a?b=1&c=2#f"),
        ("https://x.example/a?b=1&&c", "https://x.example/a?b=1&&c"),  # untouched: no utm
        ("https://x.example/a#utm_source=x", "https://x.example/a#utm_source=x"),
        ("https://x.example/utm_source/?q", "https://x.example/utm_source/?q"),
    ],
)
def test_strip_tracking(url: str, clean: str) -> None:
    assert strip_tracking(url) == clean
