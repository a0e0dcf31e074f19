"""An attacker's pass over the signing keys (issue #13): the refusals of test_keys.py, tried
with the keys and set-ups that slipped through, from the real CLI.

* outside production (``MAILER_ENV`` unset), real mail and public pages took any key at all:
  ``a``, a few spaces, or an old key that is the published development key; a link signed
  with ``a`` is forged after one guess. Wherever links leave the machine the key must be as
  strong as production asks;
* ``mailer serve`` on loopback behind a reverse proxy (how production runs it) serves a
  public ``MAILER_BASE_URL``: that is serving in the open, key and SNS allowlist needed;
* production took keys that repeat a short pattern (``abcdefgh`` four times, ``0123456789``
  over and over) or are mostly surrounding whitespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailer.config import DEV_SECRET_KEY, Settings, weak_key_reason
from mailer.errors import ConfigError

STRONG = "k3Y-" + "x7Qz9wPlmN2vR5tB8cD1eF4gH6jK0sUa"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


def _mailer(tmp: Path, *args: str, **extra: str) -> Any:
    """The real CLI in a development environment (no MAILER_* from outside) plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        COLUMNS="200",
        MAILER_DATABASE_URL=f"sqlite:///{tmp / 'keys.db'}",
        MAILER_OUTBOX_DIR=str(tmp / "outbox"),
        MAILER_SES_REGION="us-east-1",
        MAILER_SES_ENDPOINT_URL="http://127.0.0.1:9",
        MAILER_SMTP_URL="smtp://127.0.0.1:9",
        **extra,
    )
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
    )


def _refused(r: Any, *words: str) -> None:
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"MAILER_SECRET_KEY": "a"}, "MAILER_SECRET_KEY is shorter than 32"),
        ({"MAILER_SECRET_KEY": " " * 40}, "MAILER_SECRET_KEY is only whitespace"),
        (
            {"MAILER_SECRET_KEY": STRONG, "MAILER_OLD_SECRET_KEYS": DEV_SECRET_KEY},
            "MAILER_OLD_SECRET_KEYS",
        ),
    ],
)
@pytest.mark.parametrize("transport", ["ses", "smtp"])
def test_real_mail_outside_production_refuses_a_weak_key(
    tmp_path: Path, transport: str, keys: dict[str, str], named: str
) -> None:
    r = _mailer(tmp_path, "worker", "--once", MAILER_TRANSPORT=transport, **keys)
    _refused(r, named, f"send through {transport}")


@pytest.mark.parametrize(
    ("args", "extra", "named"),
    [
        (["--host", "0.0.0.0"], {"MAILER_SECRET_KEY": "a"}, "MAILER_SECRET_KEY is shorter"),
        (["--host", "::"], {"MAILER_SECRET_KEY": "\t" * 40}, "MAILER_SECRET_KEY is only white"),
        # behind a reverse proxy: loopback, but the pages are the public base URL's
        (
            ["--host", "127.0.0.1"],
            {"MAILER_BASE_URL": "https://news.example.org"},
            "MAILER_SECRET_KEY is not set: refusing to serve https://news.example.org",
        ),
        (
            ["--host", "localhost"],
            {"MAILER_BASE_URL": "https://news.example.org", "MAILER_SECRET_KEY": STRONG},
            "MAILER_SNS_TOPIC_ARNS is empty",
        ),
    ],
)
def test_serving_in_the_open_refuses_weak_keys_and_proxied_loopback(
    tmp_path: Path, args: list[str], extra: dict[str, str], named: str
) -> None:
    _refused(_mailer(tmp_path, "serve", "--port", "9", *args, **extra), named)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("abcdefgh" * 4, "repeats a pattern of 8 characters"),
        ("0123456789abcdef" * 2, "repeats a pattern of 16 characters"),
        ("1234567890" * 4, "repeats a pattern of 10 characters"),
        ("  k3Y-x7Qz9wPl" + " " * 30, "is shorter than 32 characters without its surrounding"),
        (" \t\n\r\x0b\x0c\u00a0\u2002\u2003\u2009" * 4, "is only whitespace"),
    ],
)
def test_production_refuses_patterned_and_padded_keys(key: str, reason: str) -> None:
    assert reason in str(weak_key_reason(key))
    with pytest.raises(ConfigError, match=f"MAILER_SECRET_KEY {reason}"):
        Settings.from_env({"MAILER_ENV": "production", "MAILER_SECRET_KEY": key})
    if not key.strip():
        return  # as an old key it is no key at all: MAILER_OLD_SECRET_KEYS drops blanks
    with pytest.raises(ConfigError, match="MAILER_OLD_SECRET_KEYS"):
        Settings.from_env(
            {"MAILER_ENV": "production", "MAILER_SECRET_KEY": STRONG, "MAILER_OLD_SECRET_KEYS": key}
        )


def test_random_keys_of_every_usual_kind_are_fine() -> None:
    """What `mailer keygen`, `openssl rand -hex 32` / `-base64 32` and a UUID look like."""
    for key in (
        "Zq3_0cVx8JkLm2Nb4Pw6Rt9Yh1Ds5Fg7Aa-Ee3Uu0Ii",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "n4bQgYhMLLnpWdDNdCqTDPKzXAsnvFdLOYzXzxsfTms=",
        "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    ):
        assert weak_key_reason(key) is None, key
