"""A second attacker's (and a fault's) pass: edges nobody attacked yet. Each test says what
it tries; those that found something failed before their fix (named in the commit)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import redis
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError

from mailer.access.models import HandedIssue
from mailer.cli.context import AppContext
from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.sending import system_mail
from mailer.sending.models import Campaign
from mailer.web import ratelimit
from mailer.web.app import create_app
from mailer.webhooks.dispatch import CLAIM_SLACK, Background, Dispatcher, Policy
from mailer.webhooks.endpoints import add as add_endpoint
from mailer.webhooks.http import Answer, Request
from subscribers import store
from subscribers.db import make_engine, session_factory
from subscribers.outbox import WebhookAttempt, WebhookDelivery, emit
from tests.conftest import Database
from tests.delivery_helpers import make_campaign, seed_list
from tests.desk_support import Desk, campaigns_in, checked, issue_text, paste, send_fields
from tests.plugins.mailer_server import free_port
from tests.web_support import Clock, Web, csrf_of
from tests.webhook_receiver import Receiver


def _wait_until(done: object, what: str, limit: float = 20.0) -> None:
    """Poll ``done()`` until true; the limit only stops a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.05)


# -- 6. a PostgreSQL session of a vanished host must not hold its locks forever -------------


def test_a_session_idle_inside_a_transaction_is_ended_and_its_locks_released(
    pg_url: str,
) -> None:
    """A client that took a row lock and then went silent (its host gone, TCP not yet
    noticed) held the lock until the server's TCP keepalive gave up, hours: every worker
    claiming that row waited. The server now ends such a session."""
    vanished = make_engine(pg_url, idle_timeout=0.3)
    other = make_engine(pg_url)
    try:
        conn = vanished.connect()
        conn.execute(text("CREATE TABLE IF NOT EXISTS attack_lock (id int PRIMARY KEY)"))
        conn.execute(text("INSERT INTO attack_lock VALUES (1) ON CONFLICT DO NOTHING"))
        conn.commit()
        conn.execute(text("SELECT id FROM attack_lock WHERE id = 1 FOR UPDATE"))
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with other.connect() as watcher:

            def ended() -> bool:
                alive = watcher.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar_one()
                watcher.rollback()
                return bool(alive == 0)

            _wait_until(ended, "the server to end the idle-in-transaction session")
            # the row is free again: another session locks it without waiting
            watcher.execute(text("SET lock_timeout = '1s'"))
            got = watcher.execute(
                text("SELECT id FROM attack_lock WHERE id = 1 FOR UPDATE")
            ).scalar_one()
            assert got == 1
            watcher.execute(text("DROP TABLE attack_lock"))
            watcher.commit()
        with pytest.raises(DBAPIError):  # the vanished client's next word finds it gone
            conn.execute(text("SELECT 1"))
        conn.close()
    finally:
        vanished.dispose()
        other.dispose()


def _idle_setting(engine_url: str, **kwargs: object) -> str:
    engine = make_engine(engine_url, **kwargs)  # type: ignore[arg-type]
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar())
    finally:
        engine.dispose()


def test_every_entrance_sets_the_idle_timeout_from_its_setting(
    pg_url: str, tmp_path: object
) -> None:
    """The web app and the CLI (hence `mailer worker`) open PostgreSQL with
    MAILER_DB_IDLE_TIMEOUT; the default is 10 minutes; 0 leaves the server's own."""
    assert _idle_setting(pg_url) == "10min"
    assert _idle_setting(pg_url, idle_timeout=0) == "0"
    # options given in the URL are kept, and win
    url = pg_url + "?options=-c%20idle_in_transaction_session_timeout%3D7s"
    assert _idle_setting(url) == "7s"

    settings = Settings.from_env(
        {
            "MAILER_DATABASE_URL": pg_url,
            "MAILER_DB_IDLE_TIMEOUT": "90s",
            "MAILER_SECRET_KEY": "test-secret-key-4f9c2a7e1b8d6053",
            "MAILER_ENV": "test",
        }
    )
    app = create_app(settings)
    web = app.state.web
    try:
        with web.engine.connect() as conn:
            shown = conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
        assert shown == "90s"
    finally:
        web.close()
    cli = AppContext(settings=settings)
    try:
        with cli.engine.connect() as conn:
            shown = conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
        assert shown == "90s"
    finally:
        cli.engine.dispose()
    with pytest.raises(ConfigError, match="MAILER_DB_IDLE_TIMEOUT"):
        Settings(db_idle_timeout=-1).validate()


# -- 1. the issue handover: a token holder filling the disk -------------------------------


@pytest.fixture
def desk(db: Database) -> Iterator[Desk]:
    d = Desk(db, handover_limit=3)
    yield d
    d.close()


def _kept(db: Database) -> int:
    with db.sessions() as s:
        return s.scalar(select(func.count()).select_from(HandedIssue)) or 0


def test_new_issue_texts_per_token_are_bounded_across_the_api_and_the_desk(desk: Desk) -> None:
    """Every POST /api/v1/issues with a different text was kept for good, with no bound on
    their number: a leaked editor token (or a looping pipeline) could fill the disk a MB at
    a time. New texts per token and day are now bounded (MAILER_HANDOVER_LIMIT), the API
    and the desk's paste together; the same text again stays free."""
    api = desk.client()
    bearer = {"Authorization": f"Bearer {desk.editor_token}", "Content-Type": "text/plain"}

    def post(n: int) -> int:
        body = issue_text(f"flood {n}").encode()
        return api.post("/api/v1/issues", content=body, headers=bearer).status_code

    assert [post(n) for n in range(2)] == [201, 201]
    c = desk.signed_in()
    assert paste(c, issue_text("flood 2")).status_code == 303  # the third, from the desk
    refused = api.post("/api/v1/issues", content=issue_text("flood 3").encode(), headers=bearer)
    assert refused.status_code == 429, refused.text
    assert "MAILER_HANDOVER_LIMIT" in refused.json()["error"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86400
    desk_refused = paste(c, issue_text("flood 4"))
    assert desk_refused.status_code == 429
    assert "Too many new issues today" in desk_refused.text
    assert "nothing was kept" in desk_refused.text
    assert _kept(desk.db) == 3  # nothing of the refused ones
    assert post(0) == 200  # a retry of a kept text is free, limit or not
    # another token has its own count
    ops = {"Authorization": f"Bearer {desk.ops_token}", "Content-Type": "text/plain"}
    other = api.post("/api/v1/issues", content=issue_text("ops 1").encode(), headers=ops)
    assert other.status_code == 201, other.text
    # a day later the token may hand over again
    desk.clock.advance(days=1, seconds=1)
    assert post(5) == 201


# -- 3. "mail me my preferences link": one inbox bombed from many networks ------------------


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db, subscribe_address_limit=3, subscribe_ip_limit=5)
    with db.sessions.begin() as s:
        store.subscribe(s, "known@example.com", store.get_list(s, "brief"), confirmed=True)
    yield w
    w.close()


def _blind(page: str) -> str:
    """The answer with what may differ between two posts taken out: the address it echoes
    and the form's token."""
    page = re.sub(r"[a-z]+@example\.com", "ADDRESS", page)
    return re.sub(r'name="csrf_token" value="[^"]*"', "", page)


def test_one_address_asked_from_many_networks_gets_three_mails_and_the_same_answer(
    web: Web,
) -> None:
    """Each network is limited; an attacker with many (a botnet, IPv6 /64s) was the case
    the per-network limit cannot stop. One address gets at most its few mails, whichever
    networks ask, and every answer (mailed, limited, unknown) reads the same."""
    answers = []
    for n in range(30):
        c = web.new_client(ip=f"198.51.{100 + n}.7")
        page = c.get("/preferences")
        r = c.post(
            "/preferences", data={"csrf_token": csrf_of(page.text), "email": "known@example.com"}
        )
        assert r.status_code == 200, r.text
        answers.append(_blind(r.text))
        c.close()
    assert len(web.mails()) == 3
    page = web.client.get("/preferences")
    unknown = web.client.post(
        "/preferences", data={"csrf_token": csrf_of(page.text), "email": "nobody@example.com"}
    )
    assert unknown.status_code == 200
    assert {*answers, _blind(unknown.text)} == {answers[0]}  # limited reads as unknown
    # and an hour later the window has moved, but the ledger's day has not
    web.clock.advance(hours=1, seconds=1)
    for n in range(5):
        c = web.new_client(ip=f"203.0.{n}.9")
        page = c.get("/preferences")
        c.post(
            "/preferences", data={"csrf_token": csrf_of(page.text), "email": "known@example.com"}
        )
        c.close()
    assert len(web.mails()) == 3


def test_preferences_link_mails_racing_each_other_stay_within_the_ledgers_limit(
    db: Database,
) -> None:
    """The web's windows are per process (memory://): several `mailer serve` processes each
    allow the address its 3 an hour, and the ledger's day count is the last line. That
    count was read, then a row added: requests at the same moment all read 'fewer than 3'."""
    w = Web(db, subscribe_address_limit=0, subscribe_ip_limit=0)
    try:
        with db.sessions.begin() as s:
            store.subscribe(s, "known@example.com", store.get_list(s, "brief"), confirmed=True)
        state = w.app.state.web
        start = threading.Barrier(12)

        def ask() -> bool:
            start.wait()
            return system_mail.send_preferences_link(
                db.sessions, state.settings, state.transport(), "known@example.com", now=state.now()
            )

        with ThreadPoolExecutor(12) as pool:
            sent = [f.result() for f in [pool.submit(ask) for _ in range(12)]]
        assert sum(sent) <= 3, sent
        assert len(w.mails()) == sum(sent)
    finally:
        w.close()


def test_confirmation_mails_racing_each_other_stay_within_the_ledgers_limit(
    db: Database,
) -> None:
    """The same count-then-add for the double opt-in mail (the API's subscribe, `mailer
    subscribers add` run in a loop): at most 3 a day to one address, however they race."""
    w = Web(db, subscribe_address_limit=0, subscribe_ip_limit=0)
    try:
        with db.sessions.begin() as s:
            brief = store.get_list(s, "brief")
            store.subscribe(s, "pending@example.com", brief)
            ids = store.get_subscriber(s, "pending@example.com").id, brief.id
        state = w.app.state.web
        start = threading.Barrier(12)

        def ask() -> bool:
            start.wait()
            return system_mail.request_confirmation(
                db.sessions, state.settings, state.transport(), *ids, now=state.now()
            )

        with ThreadPoolExecutor(12) as pool:
            sent = [f.result() for f in [pool.submit(ask) for _ in range(12)]]
        assert sum(sent) <= 3, sent
        assert len(w.mails()) == sum(sent)
    finally:
        w.close()


# -- 4. Redis (the limits' shared storage) stopped mid-run ---------------------------------


class PrivateRedis:
    """A redis-server of this test's own on a free port: stopped, killed and restarted at
    will (never the shared one other tests use)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"), "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        _wait_until(answers, "redis-server to answer")
        client.close()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    r = PrivateRedis()
    r.start()
    yield r
    r.kill()


def _unavailable(web: Web, limit: str) -> float:
    r = web.client.get("/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"})
    assert r.status_code == 200, r.text
    found = re.search(rf'mailer_rate_limit_unavailable_total{{limit="{limit}"}} (\S+)', r.text)
    assert found, r.text
    return float(found.group(1))


def test_redis_hanging_or_gone_lets_pages_answer_says_so_and_limits_resume(
    db: Database, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped (SIGSTOP: a hung host, no refusal) then killed and restarted. Pages
    answer throughout, hits go through uncounted, the log says so once per outage window
    (each failed ask is a log line: one line means Redis was asked once, not per request:
    every ask of a hung Redis held the event loop, limits' default was 5 s), /metrics counts
    them, and counting resumes after Redis is back."""
    web = Web(
        db,
        rate_limit_storage=private_redis.url,
        subscribe_ip_limit=2,
        subscribe_address_limit=0,
        admin_token="metrics-token-0123456789",
    )
    try:

        def posts(ip: str, n: int) -> list[int]:
            c = web.new_client(ip=ip)
            try:
                return [
                    web.subscribe(f"r{ip}-{i}@example.com", client=c).status_code for i in range(n)
                ]
            finally:
                c.close()

        first = posts("198.51.100.1", 3)
        assert first[2] == 429 and 429 not in first[:2], first  # counted in Redis
        private_redis.signal(signal.SIGSTOP)
        with caplog.at_level(logging.WARNING, logger="mailer.web.ratelimit"):
            hung = posts("198.51.100.2", 6)
            assert web.client.get("/subscribe/brief").status_code == 200
        assert all(code < 400 for code in hung), hung  # let through, no 5xx
        said = [r for r in caplog.records if "subscribe-ip not counted" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in said]
        assert _unavailable(web, "subscribe-ip") == 6
        # the desk's sign-in limit is one of the app's limits too: counted in the same family
        assert _unavailable(web, "desk-sign-in") == 0
        private_redis.kill()  # gone for good, then a new one on the same port
        private_redis.start()
        web.clock.advance(seconds=ratelimit.RETRY_AFTER + 1)
        again = posts("198.51.100.3", 3)
        assert again[2] == 429 and 429 not in again[:2], again  # counting again
        assert _unavailable(web, "subscribe-ip") == 6
    finally:
        web.close()


# -- 5. the desk and the API sending the same issue at the same moment ----------------------


@pytest.fixture
def desk_unlimited(db: Database) -> Iterator[Desk]:
    d = Desk(db)
    yield d
    d.close()


def test_the_desk_and_the_api_sending_one_issue_at_once_make_one_campaign(
    desk_unlimited: Desk,
) -> None:
    """Two entrances, two editors, one issue and list, posted at the same moment (a barrier
    between the threads), several rounds: one campaign each time; the API's loser is a 409
    naming the winner's campaign, the desk's a 409 page that says it in words."""
    desk = desk_unlimited
    desk_client = desk.signed_in()
    api_client = desk.client(ip="203.0.113.77")
    bearer = {"Authorization": f"Bearer {desk.ops_token}"}
    seen: set[tuple[int, int]] = set()
    for round_ in range(4):
        path, _ = checked(desk_client, issue_text(f"race {round_}"))
        key = path.rsplit("/", 1)[1]
        _, fields = send_fields(desk_client, path)
        start = threading.Barrier(2)
        answers: dict[str, Any] = {}

        def by_desk(
            path: str = path,
            fields: dict[str, str] = fields,
            start: threading.Barrier = start,
            answers: dict[str, Any] = answers,
        ) -> None:
            start.wait()
            answers["desk"] = desk_client.post(f"{path}/send", data=fields)

        def by_api(
            key: str = key, start: threading.Barrier = start, answers: dict[str, Any] = answers
        ) -> None:
            start.wait()
            answers["api"] = api_client.post(
                "/api/v1/campaigns", json={"issue": key, "list": "brief"}, headers=bearer
            )

        threads = [threading.Thread(target=by_desk), threading.Thread(target=by_api)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        made = [c for c in campaigns_in(desk.db) if c.issue_key == key]
        assert len(made) == 1, [(c.id, c.status) for c in made]
        winner = made[0].id
        desk_r, api_r = answers["desk"], answers["api"]
        seen.add((desk_r.status_code, api_r.status_code))
        if api_r.status_code == 201:
            assert api_r.json()["id"] == winner
            assert desk_r.status_code == 409, desk_r.text
            assert f"already sent to brief as campaign {winner}" in desk_r.text
        else:
            assert desk_r.status_code == 303, desk_r.text
            assert api_r.status_code == 409, api_r.text
            assert api_r.json()["campaign"] == winner
            assert f"campaign {winner}" in api_r.json()["error"]
    assert seen <= {(409, 201), (303, 409)}, seen


# -- 2. the webhook dispatcher with PostgreSQL going away mid-delivery ----------------------


class HoldingReceiver(Receiver):
    """Verifies and keeps each post, then holds its answer until :meth:`let_go`: the
    deliveries are in flight for as long as the test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def answer(self, h: BaseHTTPRequestHandler, error: str | None) -> None:
        self.go.wait(60)
        super().answer(h, error)

    def let_go(self) -> None:
        self.go.set()


def _emit(db: Database, n: int, tag: str) -> None:
    with db.sessions.begin() as s:
        for i in range(n):
            emit(s, "subscriber.confirmed", {"n": f"{tag}-{i}"})


def _delivery_states(db: Database) -> list[str]:
    with db.sessions() as s:
        return sorted(s.scalars(select(WebhookDelivery.status)))


def _terminate_others(pg_url: str) -> int:
    """pg_terminate_backend on every other session of the test's database: the worker's."""
    admin = make_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        return int(killed)
    finally:
        admin.dispose()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_the_webhook_worker_loses_no_event_when_postgresql_drops_it_mid_delivery(
    db: Database,
) -> None:
    """`mailer worker` claims three events and posts them; while the posts are in flight
    every PostgreSQL session it has is killed (pg_terminate_backend: a failover, a restart,
    an operator's kill). Then the receiver answers. Each event arrives exactly once (the
    claim was committed before the post; recording reconnects), the worker lives on and
    delivers what comes after."""
    receiver = HoldingReceiver()
    receiver.start()
    with db.sessions.begin() as s:
        receiver.secret = add_endpoint(s, receiver.url, "subscriber.confirmed").secret
    _emit(db, 3, "before")
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailer", "worker", "--poll", "0.2"],
        env=db.env(MAILER_WEBHOOK_RETRY_BASE="1s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=db.tmp,
    )
    failed: AssertionError | None = None
    try:
        _wait_until(lambda: len(receiver.received) == 3, "three posts in flight", 60)
        db.engine.dispose()  # ours closed: what is left is the worker's
        assert _terminate_others(db.url) >= 1
        receiver.let_go()
        _wait_until(lambda: _delivery_states(db) == ["delivered"] * 3, "the three recorded", 60)
        assert worker.poll() is None  # it survived
        _emit(db, 2, "after")  # and carries on
        _wait_until(lambda: _delivery_states(db) == ["delivered"] * 5, "the two after", 60)
    except AssertionError as caught:
        failed = caught
    finally:
        receiver.let_go()
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
        receiver.stop()
    assert failed is None, f"{failed}; received {len(receiver.received)}; the worker said: {err}"
    assert worker.returncode == 0, err
    uids = [r.headers["webhook-id"] for r in receiver.received]
    assert all(r.error is None for r in receiver.received)
    assert len(uids) == len(set(uids)) == 5, uids  # none lost, none twice
    with db.sessions() as s:
        attempts = list(s.scalars(select(WebhookAttempt.status_code)))
    assert attempts == [204] * 5


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_a_pass_whose_record_is_cut_off_posts_again_once_and_the_loop_lives(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The worst moment: the answers are in and their record is being written when the
    session is killed. The record rolls back whole; the claims stay (committed before the
    post), so nothing is taken again until they lapse: then each event is posted once more
    with the same webhook-id (the documented at-least-once; receivers drop repeats) and
    recorded. The background loop logs the failed pass and goes on."""
    clock = Clock()
    engine = make_engine(db.url)
    admin = make_engine(db.url, isolation_level="AUTOCOMMIT")
    cut = threading.Event()

    def cut_off(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO webhook_attempts") and not cut.is_set():
            cut.set()
            with admin.connect() as a:
                pid = cursor.connection.info.backend_pid
                a.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    event.listen(engine, "before_cursor_execute", cut_off)
    posted: list[str] = []

    def post(requests: list[Request], _timeout: float) -> list[Answer]:
        posted.extend(r.headers["webhook-id"] for r in requests)
        return [Answer(r.key, 204, None) for r in requests]

    with db.sessions.begin() as s:
        add_endpoint(s, "http://127.0.0.1:9/hook", "subscriber.confirmed")
    _emit(db, 3, "cut")
    clock.advance(seconds=1)  # the events are due
    dispatcher = Dispatcher(
        session_factory(engine), Policy(timeout=1.0, retry_base=1.0), clock=clock, post=post
    )
    loop = Background(dispatcher, poll=0.05)
    try:
        with caplog.at_level(logging.ERROR, logger="mailer.webhooks.dispatch"):
            loop.start()
            _wait_until(cut.is_set, "the record to be cut off")
            _wait_until(lambda: "webhook pass failed" in caplog.text, "the failed pass logged")
        assert len(posted) == 3
        assert _delivery_states(db) == ["pending"] * 3  # rolled back whole, nothing lost
        clock.advance(seconds=1.0 + CLAIM_SLACK.total_seconds() + 1)  # the claims lapse
        _wait_until(lambda: _delivery_states(db) == ["delivered"] * 3, "the repeat recorded")
    finally:
        loop.stop()
        engine.dispose()
        admin.dispose()
    assert len(posted) == 6 and sorted(posted[:3]) == sorted(posted[3:])  # once more, same ids


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_the_worker_outlives_its_sessions_killed_while_it_looks_for_work(db: Database) -> None:
    """`mailer worker` looks for work every --poll seconds; its sessions killed while it
    looked (a failover, pg_terminate_backend) ended the process with 'cannot reach the
    database' (found by the test above, under load): the campaign loop rode out a lost
    connection, the look between campaigns did not. It now waits and looks again, and
    sends the campaign queued after."""
    seed_list(db.sessions, 3)
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailer", "worker", "--poll", "0.02"],
        env=db.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=db.tmp,
    )
    failed: AssertionError | None = None
    try:
        active = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        db.engine.dispose()
        watcher = make_engine(db.url, isolation_level="AUTOCOMMIT")
        with watcher.connect() as conn:
            _wait_until(lambda: conn.execute(active).scalar_one() > 0, "the worker's session")
        watcher.dispose()
        for _ in range(30):  # killed again and again while it polls
            _terminate_others(db.url)
            time.sleep(0.03)
        assert worker.poll() is None, "the worker died"
        campaign_id, _n, _r = make_campaign(db.sessions, db.settings())
        with db.sessions() as s:

            def done() -> bool:
                s.expire_all()
                campaign = s.get(Campaign, campaign_id)
                return campaign is not None and campaign.status == "done"

            _wait_until(done, "the campaign queued after to be sent", 60)
    except AssertionError as caught:
        failed = caught
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
    assert failed is None, f"{failed}; the worker said: {err}"
    assert worker.returncode == 0, err
    assert "lost the database connection" in err
