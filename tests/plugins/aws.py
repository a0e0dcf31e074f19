"""Pytest fixtures for AWS peers: moto in server mode and the SES-v2 test server.

* ``aws_env`` (session): dummy credentials and region us-east-1 in the environment, no
  shared config files, no instance metadata lookups, so boto3 never reaches real AWS.
* ``moto_server`` (session): a ``ThreadedMotoServer`` on 127.0.0.1 and a free port; its URL.
* ``moto`` (function): the same server, reset before the test; ``moto.sent_emails()`` reads
  back what SES accepted through ``/moto-api/data.json``.
* ``ses_server`` (function): a running :class:`tests.support.ses_server.SesServer`.
* ``sesv2_client(url)`` (function): a boto3 ``sesv2`` client pointed at ``url``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.support.ses_server import SesServer

REGION = "us-east-1"
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL")


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _ENV.items():
            mp.setenv(name, value)
        for name in _UNSET:
            mp.delenv(name, raising=False)
        yield dict(_ENV)


@pytest.fixture(scope="session")
def moto_server(aws_env: dict[str, str]) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class MotoHandle:
    """The moto server of this test run, freshly reset."""

    url: str

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

    def data(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=10) as resp:
            result: dict[str, Any] = json.load(resp)
        return result

    def sent_emails(self) -> list[dict[str, Any]]:
        """Every message moto's SES backend accepted (raw ones carry ``raw_data``)."""
        ses = self.data().get("ses", {})
        return [*ses.get("RawMessage", []), *ses.get("Message", [])]


@pytest.fixture
def moto(moto_server: str) -> MotoHandle:
    handle = MotoHandle(moto_server)
    handle.reset()
    return handle


@pytest.fixture
def ses_server(aws_env: dict[str, str]) -> Iterator[SesServer]:
    from tests.support.ses_server import SesServer

    with SesServer() as server:
        yield server


@pytest.fixture
def sesv2_client(aws_env: dict[str, str]) -> Callable[..., Any]:
    import boto3
    from botocore.config import Config

    def make(url: str, **config: Any) -> Any:
        options: dict[str, Any] = {"retries": {"mode": "standard", "total_max_attempts": 1}}
        options.update(config)
        return boto3.client("sesv2", region_name=REGION, endpoint_url=url, config=Config(**options))

    return make
