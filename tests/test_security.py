"""Security suite: what a reader, an editor or a stranger controls cannot inject or get in.

Each case asserts the specific rejection (error class and message, or status code), or, where
the input is legitimate but hostile, that the output is neutralized and still parses.

Covered here:

* header injection through every field a reader or editor controls, into real sent messages
  (the engine with the outbox transport): reader name with CR/LF/NUL, 10,000 characters,
  non-ASCII; reader address; issue subject; list name; list slug; From display name and
  Reply-To — the store refuses them, and MessageTemplate refuses them again for old rows;
* HTML injection into the email (issue title, summary, source, intro, name) and into the
  web pages (the subscribe form's echo, the preferences page's name);
* CSV injection in ``mailer subscribers export`` (=, +, -, @, tab, CR), through the CLI;
* oversized multipart uploads (413) on the reader forms;
* /admin and /metrics: token variants not in tests/test_admin.py (query string, prefix,
  suffix, other case), and a POST without the token changes nothing;
* token tampering at the web layer: a token of another purpose, another key, another list.

Covered elsewhere (not repeated): the SNS forgery matrix (tests/test_sns.py, 30+ cases) and
forged webhooks (tests/test_webhook.py); token signing/tampering/expiry units
(tests/test_tokens.py); security headers, 413 on urlencoded and chunked bodies, open
redirects, Host reflection (tests/test_web_security.py); /admin and /metrics without or with
a wrong token, 404 with none configured (tests/test_admin.py); export of one formula cell
(tests/test_store.py); arbitrary input into the parsers (tests/test_fuzz.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.errors import InputError, InvalidAddressError, RenderError
from mailer.issue.model import Issue, Item
from mailer.render.compiler import Branding, render_issue
from mailer.render.message import MessageTemplate
from mailer.render.tokens import Signer
from subscribers import store
from subscribers.models import MailingList, Subscriber, Subscription, Suppression
from tests.conftest import Database
from tests.web_support import BASE, AppClient, Web, csrf_of, html_body, read_eml, text_body

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "admin-token-for-security-0123456789"
CLI = [sys.executable, "-m", "mailer"]

# -- helpers ---------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Every start tag with its attributes, for "no script, no handler, no javascript:"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def _own_static_script(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    """The subscribe page's one script: a file of ours under /static/, nothing inline."""
    return tag == "script" and dict(attrs).get("src") == f"{BASE}/static/tz.js"


def assert_inert_html(html: str) -> None:
    """No script/iframe/object element (but our own static tz.js), no on* handler, no
    javascript:/data: URL."""
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        if _own_static_script(tag, attrs):
            continue
        assert tag not in ("script", "iframe", "object", "embed"), tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, value)
            if name in ("href", "src", "action") and value:
                scheme = value.strip().split(":", 1)[0].lower()
                assert scheme not in ("javascript", "data", "vbscript"), (tag, name, value)


def sent_messages(db: Database) -> list[EmailMessage]:
    return [read_eml(p) for p in sorted((db.tmp / "outbox").rglob("*.eml"))]


HEADERS = {
    "from",
    "subject",
    "mime-version",
    "list-id",
    "feedback-id",
    "content-type",
    "to",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "date",
}


def assert_clean_headers(msg: EmailMessage, raw: bytes) -> None:
    """Exactly the headers we write, each line within RFC 5322's 998 octets, no NUL."""
    assert {k.lower() for k in msg} == HEADERS
    assert len(msg.keys()) == len(HEADERS)  # none twice
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\x00" not in head
    for line in head.split(b"\r\n"):
        assert len(line) <= 998
    assert not msg.defects


# -- header injection through reader fields, into real sent messages -------------------------

HOSTILE_NAMES = {
    "crlf": "Eve\r\nBcc: victim@example.net",
    "lf": "Eve\nX-Injected: 1",
    "cr": "Eve\rX-Injected: 1",
    "nul": "Eve\x00Bcc: victim@example.net",
    "long": "Ada " + "x" * 196,  # the column's limit (200); longer in the template test
    "unicode": "Zoë 中文 Ñandú \u2028 😀",
    "html": '<script>alert(1)</script>"><img src=x onerror=alert(2)>',
    "encoded-word": "=?utf-8?q?Bcc=3A_victim=40example=2Enet?=",
}


def _issue(**item: str) -> Issue:
    fields = {
        "title": "A quiet day",
        "source": "Example Wire",
        "paragraph": "Nothing happened.",
        "url": "https://news.example.net/a",
    }
    fields.update(item)
    return Issue(
        subject=item.get("subject", "Security issue"),
        preheader=item.get("preheader", "Preheader"),
        date=dt.date(2026, 11, 28),
        intro=(item.get("intro", "Good morning."),),
        items=(
            Item(
                title=fields["title"],
                source=fields["source"],
                paragraphs=(fields["paragraph"],),
                url=fields["url"],
            ),
        ),
        closing=("Bye.",),
    )


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db, admin_token=ADMIN_TOKEN)
    yield w
    w.close()


def test_hostile_reader_names_never_reach_a_header(web: Web) -> None:
    from tests.web_support import send_issue

    db = web.db
    names = dict(HOSTILE_NAMES)
    if db.backend == "postgresql":
        del names["nul"]  # PostgreSQL text cannot hold NUL at all: nothing to inject
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        for kind, name in names.items():
            # straight into the table: what an old import or a bug could have left there
            sub = Subscriber(email=f"{kind}@example.com", name=name, attributes={})
            s.add(sub)
            s.flush()
            s.add(Subscription(subscriber_id=sub.id, list_id=mlist.id, status="active"))
    send_issue(db.sessions, web.settings, _issue())
    files = sorted((db.tmp / "outbox").rglob("*.eml"))
    assert len(files) == len(names)
    by_to = {}
    for path in files:
        raw = path.read_bytes()
        msg = read_eml(path)
        assert_clean_headers(msg, raw)
        by_to[str(msg["To"])] = msg
    for kind, name in names.items():
        msg = by_to[f"{kind}@example.com"]
        text, html = text_body(msg), html_body(msg)
        assert msg["Bcc"] is None and msg["X-Injected"] is None
        shown = name.translate({c: " " for c in [*range(32), *range(127, 160)]})
        assert shown in text, kind  # the name is there, control characters as spaces
        assert "\x00" not in text and "\x00" not in html
        assert_inert_html(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_body(by_to["html@example.com"])


def test_reader_address_with_a_line_break_is_refused_by_the_store(db: Database) -> None:
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="B <b@example.org>")
        for bad in ("a@example.com\r\nBcc: v@example.net", "a@example.com\x00", "a\n@example.com"):
            with pytest.raises(InvalidAddressError, match=r"invalid characters"):
                store.subscribe(s, bad, mlist, confirmed=True)
    with pytest.raises(RenderError, match="To: header value contains a control character"):
        MessageTemplate.reader_headers("a@example.com\r\nBcc: v@example.net", "https://u", "<m>")


# -- header injection through editor fields ---------------------------------------------------


@pytest.mark.parametrize("subject", ["Hello\r\nBcc: v@example.net", "Hi\nX: 1", "Nul\x00"])
def test_issue_subject_with_a_line_break_is_refused(subject: str) -> None:
    with pytest.raises(InputError, match="subject contains a line break or control character"):
        _issue(subject=subject)
    with pytest.raises(RenderError, match="Subject: header value contains a control"):
        _template(subject=subject)


def _template(**overrides: str) -> MessageTemplate:
    args: dict[str, str] = {
        "subject": "S",
        "from_address": "The Brief <brief@example.org>",
        "list_name": "The Brief",
        "list_slug": "brief",
        "reply_to": "",
    }
    args.update(overrides)
    return MessageTemplate.build(
        campaign_id=1,
        subject=args["subject"],
        from_address=args["from_address"],
        html="<p>%%name%%</p>",
        text="%%name%%",
        list_name=args["list_name"],
        list_slug=args["list_slug"],
        reply_to=args["reply_to"] or None,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("list_name", "Brief\r\nBcc: v@example.net", "List name: header value"),
        ("list_name", "Brief\x00", "List name: header value"),
        ("list_slug", "brief\nX: 1", "List slug: header value"),
        ("from_address", "Evil\r\nBcc: v@example.net <b@example.org>", "From: header value"),
        ("from_address", '"Evil\nX: 1" <b@example.org>', "From: header value"),
        ("from_address", "Ev\x00il <b@example.org>", "From: header value"),
        ("reply_to", "r@example.org\r\nBcc: v@example.net", "Reply-To: header value"),
    ],
)
def test_message_template_refuses_editor_fields_with_line_breaks(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(RenderError, match=message):
        _template(**{field: value})


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "Brief\r\nBcc: v@example.net"}, InputError, "list name contains a line"),
        ({"name": "Brief\x00"}, InputError, "list name contains a line"),
        (
            {"from_address": "Evil\r\nBcc: v@example.net <b@example.org>"},
            InvalidAddressError,
            "From address contains a line break",
        ),
        ({"from_address": "Ev\x00il <b@example.org>"}, InvalidAddressError, "From address"),
        ({"slug": "brief\r\nx"}, InputError, "bad list slug"),
    ],
)
def test_the_store_refuses_list_fields_with_line_breaks(
    db: Database, kwargs: dict[str, str], error: type[Exception], message: str
) -> None:
    args = {"slug": "brief", "name": "Brief", "from_address": "Brief <b@example.org>", **kwargs}
    with db.sessions.begin() as s, pytest.raises(error, match=message):
        store.create_list(s, args["slug"], name=args["name"], from_address=args["from_address"])
    with db.sessions() as s:
        assert s.scalars(select(MailingList)).first() is None  # nothing was stored


def test_non_ascii_and_long_editor_fields_are_encoded_and_parse_back() -> None:
    subject = "Zoë’s brief: 中国经济 " + "long " * 300
    name = "Le Brief — 简报 😀"
    template = _template(
        subject=subject, list_name=name, from_address="Brief 简报 <brief@example.org>"
    )
    headers = template.reader_headers("ümlaut@example.com", "https://x/u", "<m@example.org>")
    long_name = "Zoë " + "x" * 10_000 + "\r\nBcc: v@example.net"
    raw = template.render(to="ümlaut@example.com", fields={"name": long_name}, headers=headers)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))  # QP keeps body lines short
    static = template.head
    static.decode("ascii")  # the static headers are RFC 2047 encoded: pure ASCII
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert str(msg["Subject"]) == subject
    assert name in str(msg["List-Id"])
    assert "简报" in str(msg["From"])
    assert not msg.defects and msg["Bcc"] is None
    assert long_name in text_body(msg)  # in the body (QP-encoded), not a header


# -- HTML injection into the email ------------------------------------------------------------


def test_issue_markup_is_escaped_in_the_email() -> None:
    issue = _issue(
        subject="<script>alert(1)</script> news",
        preheader='"><img src=x onerror=alert(2)>',
        intro="<b onmouseover=alert(3)>hi</b>",
        title="<script>alert(4)</script>",
        source='" onclick="alert(5)',
        paragraph="<iframe src=javascript:alert(6)></iframe> <a href='javascript:x'>x</a>",
        url='https://news.example.net/?q="><script>alert(7)</script>',
    )
    rendered = render_issue(
        issue,
        Branding(
            newsletter_name="<i>List</i>",
            base_url=BASE,
            postal_address="<b>1 Example St</b>",
            archive_url=BASE + "/a",
        ),
    )
    for html in (rendered.html, rendered.for_archive()):
        assert_inert_html(html)
        assert "&lt;script&gt;alert(4)&lt;/script&gt;" in html
        assert "<script" not in html.lower()


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,<script>x</script>", "vbscript:x", "//evil"]
)
def test_item_links_must_be_http(url: str) -> None:
    with pytest.raises(InputError, match="link is not http"):
        Item(title="t", source="s", paragraphs=("p",), url=url)


# -- HTML injection into the web pages --------------------------------------------------------

XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def test_subscribe_form_echo_is_escaped(web: Web) -> None:
    r = web.subscribe(XSS + "@example.com", name=XSS)
    assert r.status_code == 422
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert_inert_html(r.text)
    prefill = web.client.get("/subscribe/brief", params={"email": XSS, "name": XSS})
    assert prefill.status_code == 200
    assert "<script>alert(1)</script>" not in prefill.text
    assert_inert_html(prefill.text)


def test_preferences_page_escapes_the_stored_name(web: Web) -> None:
    with web.db.sessions.begin() as s:
        sid = store.subscribe(
            s, "p@example.com", store.get_list(s, "brief"), confirmed=True, name=XSS
        ).subscriber.id
    token = web.signer.preferences_token(sid, web.brief_id, now=web.clock.now)
    page = web.client.get(f"/preferences/{token}")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert 'value="&#34;&gt;&lt;script&gt;' in page.text or "&quot;&gt;&lt;script" in page.text
    assert_inert_html(page.text)
    # a hostile name typed into the form is refused with the field's message, not stored
    r = web.client.post(
        f"/preferences/{token}",
        data={"csrf_token": csrf_of(page.text), "name": "Eve\r\nBcc: x", "list": ["brief"]},
    )
    assert r.status_code == 200  # whitespace (CR/LF) is folded to one space by clean_name
    with web.db.sessions() as s:
        assert store.get_subscriber(s, "p@example.com").name == "Eve Bcc: x"
    r = web.client.post(
        f"/preferences/{token}",
        data={"csrf_token": csrf_of(r.text), "name": "Eve\x00\u202e", "list": ["brief"]},
    )
    assert r.status_code == 422
    assert "Your name contains characters we cannot use." in r.text


# -- CSV injection in exports -----------------------------------------------------------------

FORMULAS = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\t=1", "\r=1", '=HYPERLINK("http://x")']


def test_export_neutralizes_formula_cells(db: Database, tmp_path: Path) -> None:
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="B <b@example.org>")
        for i, name in enumerate(FORMULAS):
            reader = store.subscribe(s, f"n{i}@example.com", mlist, confirmed=True).subscriber
            reader.name = name  # "\t=1" and "\r=1": stored before names were checked
        # addresses may start with formula characters too (valid local parts)
        for local in ("=cmd", "+x", "-y"):
            store.subscribe(s, f"{local}@example.com", mlist, confirmed=True)
    out = tmp_path / "export.csv"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailer",
            "subscribers",
            "export",
            "--list",
            "brief",
            "-o",
            str(out),
        ],
        env=db.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    assert rows[0] == ["email", "name", "status", "since", "time_zone"]
    data = rows[1:]
    assert len(data) == len(FORMULAS) + 3
    for row in data:
        for cell in row[:2]:
            assert not cell or cell[0] not in "=+-@\t\r", row
    names = {row[1] for row in data if row[1]}
    assert names == {"'" + f for f in FORMULAS}
    assert {"'=cmd@example.com", "'+x@example.com", "'-y@example.com"} <= {r[0] for r in data}


# -- oversized uploads --------------------------------------------------------------------------


def test_oversized_multipart_uploads_get_413(web: Web) -> None:
    page = web.client.get("/subscribe/brief")
    big = b"x" * 40_000
    r = web.client.post(
        "/subscribe/brief",
        data={"csrf_token": csrf_of(page.text), "email": "a@example.com"},
        files={"upload": ("big.csv", big, "text/csv")},
    )
    assert r.status_code == 413
    with web.db.sessions() as s:
        assert s.scalars(select(Subscriber)).first() is None
    huge = b"x" * (web.settings.max_body_bytes + 1)
    r = web.client.post(
        f"/unsubscribe/{web.signer.sign('unsubscribe', 1, web.brief_id)}",
        files={"upload": ("big.bin", huge, "application/octet-stream")},
    )
    assert r.status_code == 413


# -- /admin and /metrics: token variants --------------------------------------------------------

VARIANTS = [
    ADMIN_TOKEN[:-1],
    ADMIN_TOKEN + "x",
    ADMIN_TOKEN.upper(),
    " " + ADMIN_TOKEN + " x",
    ADMIN_TOKEN[:8],
]


@pytest.mark.parametrize("path", ["/admin", "/admin/stats.json", "/metrics"])
def test_admin_and_metrics_refuse_near_tokens_and_query_tokens(web: Web, path: str) -> None:
    for variant in VARIANTS:
        r = web.client.get(path, headers={"Authorization": f"Bearer {variant}"})
        assert r.status_code == 401, (path, variant)
    for query in ("token", "access_token", "admin_token"):
        r = web.client.get(path, params={query: ADMIN_TOKEN})
        assert r.status_code == 401, (path, query)
    ok = web.client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200


def test_admin_remove_without_the_token_changes_nothing(web: Web) -> None:
    with web.db.sessions.begin() as s:
        store.suppress(s, "kept@example.com", "complaint")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = web.client.post(
            "/admin/suppressions/remove", data={"email": "kept@example.com"}, headers=headers
        )
        assert r.status_code == 401
    with web.db.sessions() as s:
        assert s.scalars(select(Suppression.email)).all() == ["kept@example.com"]


# -- token tampering at the web layer -----------------------------------------------------------


def _active_reader(web: Web) -> int:
    with web.db.sessions.begin() as s:
        return store.subscribe(
            s, "t@example.com", store.get_list(s, "brief"), confirmed=True
        ).subscriber.id


def _status(web: Web, list_id: int) -> str:
    with web.db.sessions() as s:
        status: str = s.scalars(
            select(Subscription.status).where(Subscription.list_id == list_id)
        ).one()
        return status


def test_unsubscribe_refuses_other_purposes_keys_and_lists(web: Web) -> None:
    sid = _active_reader(web)
    other_key = Signer.from_settings(web.db.settings(secret_key="another-key"))
    forged = {
        "preferences token": web.signer.preferences_token(sid, web.brief_id, now=web.clock.now),
        "confirm token": web.signer.sign(
            "confirm",
            sid,
            web.brief_id,
            expires_at=web.clock.now + dt.timedelta(days=1),
            version=0,
        ),
        "another key": other_key.sign("unsubscribe", sid, web.brief_id),
        "list id swapped": _swap_list(web.signer.sign("unsubscribe", sid, web.other_id), sid),
        "truncated": web.signer.sign("unsubscribe", sid, web.brief_id)[:-3],
    }
    client: AppClient = web.client
    for label, token in forged.items():
        page = client.get(f"/unsubscribe/{token}")
        assert page.status_code in (400, 404), label
        one_click = client.post(
            f"/unsubscribe/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code in (400, 404), label
        assert _status(web, web.brief_id) == "active", label
    good = web.signer.sign("unsubscribe", sid, web.brief_id)
    assert client.get(f"/unsubscribe/{good}").status_code == 200


def _swap_list(token: str, sid: int) -> str:
    """Point a valid other-list token at the brief list by editing its list id in place."""
    parts = token.split(".")
    for i, part in enumerate(parts):
        if part.isdigit() and int(part) != sid:
            parts[i] = "1" if part != "1" else "2"
            break
    return ".".join(parts)


def test_every_message_id_is_new_without_a_random_draw_each() -> None:
    """A Message-ID's unique part is random once per template and then counted: each call
    (a retry of the same delivery, a test send to several addresses) gets a new one, and
    two templates of one campaign never share one."""
    first, second = _template(), _template()
    ids = [first.message_id(5) for _ in range(1_000)] + [second.message_id(5)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"<1\.5\.[0-9a-f]{13,}@example\.org>", i) for i in ids), ids[:2]
