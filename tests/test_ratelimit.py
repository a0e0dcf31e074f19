"""Subscribe rate limits counted by the `limits` library: the moving window on both storages,
and one limit shared by two app instances through the machine's Redis (issue 13, item 14b).

Redis is 127.0.0.1:6379 (`scripts/setup --dev` starts it); unreachable, these tests skip,
or fail with CI=true. Every test uses keys of its own, deleted at the end."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from mailer.errors import ConfigError
from mailer.web.app import create_app
from mailer.web.ratelimit import ClockedRedisStorage, SlidingWindow, make_storage
from tests.conftest import Database
from tests.plugins.mailer_server import free_port
from tests.web_support import AppClient, csrf_of, make_list

REDIS_URL = os.environ.get("MAILER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BASE = "http://testserver"


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI but unreachable: {err}")
        pytest.skip(f"Redis unreachable: {err}")
    before = set(client.scan_iter("mailer-ratelimit:*"))
    yield REDIS_URL
    for key in set(client.scan_iter("mailer-ratelimit:*")) - before:
        client.delete(key)
    client.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_moving_window_on_each_storage(backend: str, request: pytest.FixtureRequest) -> None:
    storage = make_storage(request.getfixturevalue("redis_url")) if backend == "redis" else None
    name = f"test-{uuid.uuid4().hex}"
    w = SlidingWindow(3, 60.0, storage=storage, name=name)
    assert [w.hit("ip", t) for t in (1000.0, 1001.0, 1002.0)] == [None, None, None]
    assert w.hit("ip", 1003.0) == pytest.approx(57.0)
    assert w.hit("ip", 1059.9) is not None  # refused hits are not counted ...
    assert w.hit("ip", 1060.5) is None  # ... so the first hit's expiry frees a slot
    assert w.hit("other", 1003.0) is None
    other_limit = SlidingWindow(1, 60.0, storage=storage, name=f"{name}-b")
    assert other_limit.hit("ip", 1003.0) is None  # another limit's keys are its own


def test_two_windows_on_one_redis_share_the_count(redis_url: str) -> None:
    name = f"test-{uuid.uuid4().hex}"
    one = SlidingWindow(2, 60.0, storage=make_storage(redis_url), name=name)
    two = SlidingWindow(2, 60.0, storage=make_storage(redis_url), name=name)
    assert isinstance(one.storage, ClockedRedisStorage) and one.storage is not two.storage
    assert one.hit("ip", 500.0) is None
    assert two.hit("ip", 501.0) is None
    assert one.hit("ip", 502.0) == pytest.approx(58.0)
    assert two.hit("ip", 502.0) == pytest.approx(58.0)


def _subscribe(client: AppClient, email: str) -> int:
    form = client.get("/subscribe/brief")
    assert form.status_code == 200
    data = {"csrf_token": csrf_of(form.text), "email": email, "name": ""}
    response = client.post("/subscribe/brief", data=data)
    return response.status_code


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_two_app_instances_share_one_limit_through_redis(db: Database, redis_url: str) -> None:
    """Two `mailer serve` processes in miniature: two apps, each with its own Redis storage
    (own connection pool), one client IP. Each alone would allow 3; together they allow 3."""
    make_list(db.sessions, "brief")
    settings = db.settings(base_url=BASE, subscribe_ip_limit=3, rate_limit_storage=redis_url)
    apps = [create_app(settings), create_app(settings)]
    assert apps[0].state.web.ip_limiter.storage is not apps[1].state.web.ip_limiter.storage
    ip = f"test-{uuid.uuid4().hex}"  # a client address no other test run uses
    clients = [AppClient(app, base_url=BASE, ip=ip) for app in apps]
    try:
        codes = [_subscribe(clients[i % 2], f"shared{i}@example.com") for i in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        refused = clients[1].post("/subscribe/brief", data={"email": "x@example.com"})
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 3600
        elsewhere = AppClient(apps[1], base_url=BASE, ip=f"test-{uuid.uuid4().hex}")
        try:
            assert _subscribe(elsewhere, "elsewhere@example.com") == 200
        finally:
            elsewhere.close()
    finally:
        for client in clients:
            client.close()
        for app in apps:
            app.state.web.close()


def test_redis_away_lets_hits_through_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    storage = make_storage(f"redis://127.0.0.1:{free_port()}/0")
    w = SlidingWindow(1, 60.0, storage=storage, name="down")
    with caplog.at_level(logging.WARNING, logger="mailer.web.ratelimit"):
        assert [w.hit("ip", 1.0), w.hit("ip", 2.0)] == [None, None]
    assert "rate limit down not counted, storage unavailable" in caplog.text


def test_storage_setting_is_checked() -> None:
    assert make_storage("memory://") is None
    with pytest.raises(ConfigError, match="MAILER_RATE_LIMIT_STORAGE"):
        make_storage("memcached://127.0.0.1:11211")
