"""Posting signed events, guarded against the receivers.

A receiver is someone else's server: it may hang, drip its answer a byte at a time, redirect
us into the private network, or answer with a gigabyte. So: only ``http``/``https`` URLs, a
whole-attempt deadline (not only per read), no redirect followed (a 3xx is a failed attempt),
at most :data:`MAX_RESPONSE_BYTES` of the answer read. Every attempt of a pass runs at once on
one event loop, so one slow receiver never holds up the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from mailer.errors import InputError

__all__ = ["MAX_RESPONSE_BYTES", "Answer", "Request", "check_url", "post_all"]

#: what is read of a receiver's answer (its body is never stored)
MAX_RESPONSE_BYTES = 64 * 1024


def check_url(url: str) -> str:
    """``url`` when it is an absolute http(s) URL with a host, else an InputError."""
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise InputError(f"webhook URL has a space or control character: {url!r}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError as err:
        raise InputError(f"not a webhook URL: {url!r} ({err})") from err
    if parts.scheme not in ("http", "https"):
        raise InputError(f"webhook URL must be http:// or https://, not {parts.scheme or '-'}://")
    if not parts.hostname:
        raise InputError(f"webhook URL has no host: {url!r}")
    if len(url) > 2000:
        raise InputError("webhook URL is longer than 2000 characters")
    return url


@dataclass(frozen=True)
class Request:
    key: int  # whatever the caller tells answers apart by (a delivery id)
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    key: int
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def post_all(requests: list[Request], timeout: float) -> list[Answer]:
    """Post every request at once; each gets ``timeout`` seconds in all."""
    if not requests:
        return []
    return asyncio.run(_post_all(requests, timeout))


async def _post_all(requests: list[Request], timeout: float) -> list[Answer]:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=0)
    # trust_env=False: no proxy or .netrc from the environment decides where a signed body
    # goes or what credentials ride along; the URL as added is where it is posted
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=timeout, limits=limits, trust_env=False
    ) as client:
        return list(await asyncio.gather(*(_post(client, r, timeout) for r in requests)))


async def _post(client: httpx.AsyncClient, req: Request, timeout: float) -> Answer:
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(client, req)
    except TimeoutError:
        return Answer(req.key, None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as err:
        said = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        return Answer(req.key, None, said[:500])


async def _exchange(client: httpx.AsyncClient, req: Request) -> Answer:
    async with client.stream("POST", req.url, content=req.body, headers=req.headers) as resp:
        read = 0
        async for chunk in resp.aiter_raw():
            read += len(chunk)
            if read >= MAX_RESPONSE_BYTES:
                break  # the status is what counts; the rest is not read
        code = resp.status_code
    if 300 <= code < 400:
        where = resp.headers.get("location", "")[:200]
        return Answer(req.key, code, f"redirect to {where!r} not followed")
    if not 200 <= code < 300:
        return Answer(req.key, code, f"HTTP {code}")
    return Answer(req.key, code, None)
