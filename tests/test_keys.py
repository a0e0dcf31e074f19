"""Keys nobody can guess (issue #13 item 2): with no key, or the published development key,
links that reach real inboxes or the open internet could be computed by anyone from a
reader's id. So real transports and non-loopback serving refuse to start without a key of
our own; production refuses a weak key; and serving in the open needs the SNS topic
allowlist. Each refusal is one line naming the variable, from the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailer.cli.web_cmds import check_exposure, is_loopback
from mailer.config import DEV_SECRET_KEY, Settings, weak_key_reason
from mailer.errors import ConfigError
from mailer.render.tokens import Signer
from mailer.transports import make_transport

STRONG = "k3Y-" + "x7Qz9wPlmN2vR5tB8cD1eF4gH6jK0sUa"  # 36 characters, many different
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """A development environment (no MAILER_* from outside, no key), plus ``extra``.
    These checks run before any store is touched: a scratch SQLite file is enough."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        COLUMNS="200",
        MAILER_DATABASE_URL=f"sqlite:///{tmp / 'keys.db'}",
        MAILER_OUTBOX_DIR=str(tmp / "outbox"),
    )
    env.update(extra)
    return env


def _mailer(tmp: Path, *args: str, timeout: float = 60, **extra: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=_env(tmp, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
    )


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- mailer keygen -------------------------------------------------------------------------


def test_keygen_prints_a_fresh_strong_key_each_time(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        r = _mailer(tmp_path, "keygen")
        assert r.returncode == 0, r.stderr
        [key] = r.stdout.split()
        assert len(key) >= 32 and key.isascii() and key.replace("-", "").replace("_", "").isalnum()
        assert weak_key_reason(key) is None
        keys.append(key)
    assert keys[0] != keys[1]
    Settings(env="production", secret_key=keys[0]).validate()  # accepted where it matters


# -- sending: the one way out, make_transport ------------------------------------------------


@pytest.mark.parametrize("transport", ["smtp", "ses"])
@pytest.mark.parametrize("key", ["", DEV_SECRET_KEY])
def test_real_transports_refuse_the_built_in_key(transport: str, key: str) -> None:
    settings = Settings(transport=transport, secret_key=key, ses_region="us-east-1")
    with pytest.raises(ConfigError, match="MAILER_SECRET_KEY") as err:
        make_transport(settings)
    assert f"send through {transport}" in str(err.value)
    assert "mailer keygen" in str(err.value)


def test_the_outbox_needs_no_key(tmp_path: Path) -> None:
    """Files on this machine reach nobody: development keeps working without a key."""
    make_transport(Settings(outbox_dir=tmp_path / "outbox")).close()


@pytest.mark.parametrize("transport", ["smtp", "ses"])
def test_worker_through_a_real_transport_refuses_without_a_key(
    tmp_path: Path, transport: str
) -> None:
    for key in ({}, {"MAILER_SECRET_KEY": DEV_SECRET_KEY}):
        r = _mailer(
            tmp_path,
            "worker",
            "--once",
            MAILER_TRANSPORT=transport,
            MAILER_SMTP_URL="smtp://127.0.0.1:9",
            MAILER_SES_REGION="us-east-1",
            MAILER_SES_ENDPOINT_URL="http://127.0.0.1:9",
            **key,
        )
        assert r.returncode == 2
        line = _one_line(r.stderr)
        assert "MAILER_SECRET_KEY" in line and f"send through {transport}" in line
        assert "mailer keygen" in line


def test_a_forged_link_is_what_the_refusal_prevents() -> None:
    """Why: with the built-in key, a reader's unsubscribe link is computable from their id."""
    dev = Signer.from_settings(Settings())
    assert dev.sign("unsubscribe", 1, 1) == Signer(DEV_SECRET_KEY).sign("unsubscribe", 1, 1)
    ours = Signer.from_settings(Settings(secret_key=STRONG))
    with pytest.raises(Exception, match="bad token signature"):
        ours.verify(Signer(DEV_SECRET_KEY).sign("unsubscribe", 1, 1), "unsubscribe")


# -- production: a weak key refuses to start ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("a", "shorter than 32"),
        (DEV_SECRET_KEY, "development key"),
        ("a" * 40, "too few characters"),
    ],
)
def test_production_refuses_a_weak_key(key: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"MAILER_SECRET_KEY.*{reason}"):
        Settings.from_env({"MAILER_ENV": "production", "MAILER_SECRET_KEY": key})


def test_production_refuses_a_weak_old_key() -> None:
    with pytest.raises(ConfigError, match="MAILER_OLD_SECRET_KEYS"):
        Settings.from_env(
            {
                "MAILER_ENV": "production",
                "MAILER_SECRET_KEY": STRONG,
                "MAILER_OLD_SECRET_KEYS": "short",
            }
        )


def test_production_serve_with_key_a_refuses_to_start(tmp_path: Path) -> None:
    r = _mailer(
        tmp_path,
        "serve",
        "--port",
        str(_free_port()),
        MAILER_ENV="production",
        MAILER_SECRET_KEY="a",
    )
    assert r.returncode == 2
    line = _one_line(r.stderr)
    assert "MAILER_SECRET_KEY is shorter than 32 characters" in line
    assert "mailer keygen" in line


# -- serving beyond loopback ---------------------------------------------------------------------


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.0.2.7", "news.example.org", ""):
        assert not is_loopback(host), host


def test_exposure_checks_name_the_missing_setting() -> None:
    check_exposure(Settings(), "127.0.0.1")  # a laptop: anything goes
    with pytest.raises(ConfigError, match="MAILER_SECRET_KEY is not set: refusing to serve on"):
        check_exposure(Settings(sns_topic_arns=(TOPIC,)), "0.0.0.0")
    with pytest.raises(ConfigError, match="built-in development key"):
        check_exposure(Settings(secret_key=DEV_SECRET_KEY, sns_topic_arns=(TOPIC,)), "::")
    with pytest.raises(ConfigError, match="MAILER_SNS_TOPIC_ARNS is empty"):
        check_exposure(Settings(secret_key=STRONG), "0.0.0.0")
    check_exposure(Settings(secret_key=STRONG, sns_topic_arns=(TOPIC,)), "0.0.0.0")


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({}, "MAILER_SECRET_KEY"),
        ({"MAILER_SECRET_KEY": DEV_SECRET_KEY}, "MAILER_SECRET_KEY"),
        ({"MAILER_SECRET_KEY": STRONG}, "MAILER_SNS_TOPIC_ARNS"),
    ],
)
def test_serve_on_all_interfaces_refuses(tmp_path: Path, extra: dict[str, str], names: str) -> None:
    r = _mailer(
        tmp_path, "serve", "--host", "0.0.0.0", "--port", str(_free_port()), timeout=30, **extra
    )
    assert r.returncode == 2
    assert names in _one_line(r.stderr)


@contextmanager
def _serving(tmp_path: Path, *args: str, **extra: str) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "serve", "--port", str(port), *args],
        env=_env(tmp_path, **extra),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mailer serve did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_starts_where_it_should(tmp_path: Path) -> None:
    with _serving(tmp_path):  # loopback, no key: a developer's laptop
        pass
    with _serving(
        tmp_path, "--host", "0.0.0.0", MAILER_SECRET_KEY=STRONG, MAILER_SNS_TOPIC_ARNS=TOPIC
    ):
        pass
