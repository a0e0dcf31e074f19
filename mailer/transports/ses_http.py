"""The hot SES calls (SendEmail, SendBulkEmail) without botocore's per-call machinery.

A boto3 ``sesv2`` call costs about 1 ms of CPU here, most of it in botocore's generic
layers (the event system, a Python walk over the request shape, retry plumbing), and a
thread per request in flight makes dozens of threads fight for the GIL: a sending process
topped out at a few hundred emails per second, far below what SES allows.

:class:`SesHttp` keeps botocore for everything that must be right and does the rest itself:

* the endpoint, region, signing name, request paths, timeouts, proxies, client certificate
  and pool size come from the boto3 client it is built from (``MAILER_SES_*`` settings,
  boto3's standard lookup for the rest; proxies from the environment as botocore reads them);
* credentials are the client's own provider chain (refreshed as botocore refreshes them)
  and every request is signed by botocore's ``SigV4Auth``;
* error responses are parsed by botocore's protocol parser into the ``ClientError`` a boto3
  call raises, and connection failures become botocore's own connection exceptions, so
  :mod:`mailer.transports.ses_errors` classifies both paths alike.

What it skips is serializing through the service model: callers build the JSON body (the
raw message is base64 spliced in, never re-scanned by a JSON encoder). Requests run on one
asyncio event loop (aiohttp, keep-alive pool) in a background thread, so hundreds can be in
flight without a thread each; :meth:`SesHttp.send_raw_many` sends a whole batch at once.

After an account-level refusal (the caller says which errors are: ``halt``) no new call
starts until every send that overlapped it has returned: requests already on the wire
finish, nothing is started after the refusal is known. Other SES operations (GetAccount,
identities, suppression lists) stay on the boto3 client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import botocore
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.httpsession import get_cert_path
from botocore.parsers import create_parser

from mailer import __version__

OPERATIONS = ("SendEmail", "SendBulkEmail")
USER_AGENT = f"brief-mailer/{__version__} botocore/{botocore.__version__}"
_COMPACT = (",", ":")
T = TypeVar("T")
#: Which errors stop every later call (account-level refusals); given per send.
Halt = Callable[[Exception], bool]


@dataclass(frozen=True, slots=True)
class RawSend:
    """One SendEmail of a raw MIME message."""

    to: str
    raw: bytes
    tags: list[dict[str, str]]


def _credentials(client: Any) -> Credentials | None:
    """The client's own credential provider (refreshable ones stay refreshable)."""
    getter = getattr(client, "_get_credentials", None)  # botocore >= 1.34
    if callable(getter):
        return getter()  # type: ignore[no-any-return]  # None: the lookup found none
    return botocore.session.get_session().get_credentials()


def _proxy_for(endpoint: str, configured: Mapping[str, str] | None) -> str | None:
    """The proxy for the endpoint, looked up once: the client config's, else
    ``HTTP(S)_PROXY``/``NO_PROXY`` as botocore reads them (per request it would cost a walk
    over the environment and a thread hop in aiohttp)."""
    parts = urllib.parse.urlsplit(endpoint)
    proxies = dict(configured) if configured else urllib.request.getproxies()
    if not configured and urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxies.get(parts.scheme) or None


def _ssl_context(client_cert: str | tuple[str, str] | None) -> ssl.SSLContext:
    """Certificate checks as botocore does them: ``AWS_CA_BUNDLE``/``ca_bundle`` or
    botocore's bundled CAs; a client certificate if the client config names one."""
    ca_bundle = botocore.session.get_session().get_config_variable("ca_bundle")
    context = ssl.create_default_context(cafile=ca_bundle or get_cert_path(True))
    if isinstance(client_cert, str):
        context.load_cert_chain(client_cert)
    elif client_cert:
        context.load_cert_chain(*client_cert)
    return context


class SesHttp:
    """Signed SES v2 calls on a background event loop; every method is thread-safe."""

    def __init__(
        self,
        client: Any,
        *,
        concurrency: int | None = None,
    ) -> None:
        meta = client.meta
        model = meta.service_model
        config = meta.config
        self.endpoint = str(meta.endpoint_url).rstrip("/")
        self._region = str(meta.region_name)
        self._signing_name = str(model.signing_name or model.endpoint_prefix)
        self._operations = {name: model.operation_model(name) for name in OPERATIONS}
        self._urls = {
            name: self.endpoint + op.http["requestUri"] for name, op in self._operations.items()
        }
        self._parser = create_parser(model.protocol)
        self._credentials = _credentials(client)
        self.concurrency = max(1, concurrency or int(config.max_pool_connections))
        self._timeout = aiohttp.ClientTimeout(
            sock_connect=float(config.connect_timeout), sock_read=float(config.read_timeout)
        )
        self._proxy = _proxy_for(self.endpoint, config.proxies)
        self._ssl = _ssl_context(config.client_cert) if self.endpoint.startswith("https:") else None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: weakref.finalize[..., SesHttp] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._gate: asyncio.Semaphore | None = None
        self._active = 0  # send calls in progress
        self._halt: Exception | None = None  # an account-level refusal seen by them

    # -- the loop --------------------------------------------------------------------------

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_run_loop, args=(loop,), name="ses-http", daemon=True
                )
                thread.start()
                session = asyncio.run_coroutine_threadsafe(self._open(), loop).result()
                self._loop = loop
                # closed by close(), or when the transport is collected or the process exits
                self._closer = weakref.finalize(self, _shutdown, loop, thread, session)
            return self._loop

    async def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.concurrency, ssl=self._ssl if self._ssl is not None else False
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,
        )
        self._gate = asyncio.Semaphore(self.concurrency)
        return self._session

    def _run(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        loop = self._start()
        with self._lock:
            self._active += 1
        try:
            future: Future[T] = asyncio.run_coroutine_threadsafe(factory(), loop)
            return future.result()
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._halt = None  # everything that overlapped the refusal has returned

    # -- requests --------------------------------------------------------------------------

    def _signer(self) -> SigV4Auth:
        """A signer with the current credentials, made on the caller's thread: a refresh
        (STS, instance metadata) may block, and must not block the event loop."""
        if self._credentials is None:
            raise NoCredentialsError()
        frozen = self._credentials.get_frozen_credentials()
        return SigV4Auth(frozen, self._signing_name, self._region)

    async def _call(
        self, operation: str, body: bytes, signer: SigV4Auth, halt: Halt | None
    ) -> dict[str, Any]:
        if self._halt is not None:
            raise self._halt
        assert self._gate is not None and self._session is not None
        async with self._gate:
            if self._halt is not None:
                raise self._halt
            url = self._urls[operation]
            request = AWSRequest(
                method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
            )
            signer.add_auth(request)  # signed as late as possible: the date is in it
            status, headers, content = await self._post(url, body, dict(request.headers))
        if status < 300:
            answer: dict[str, Any] = json.loads(content) if content else {}
            return answer
        parsed = self._parser.parse(
            {"status_code": status, "headers": headers, "body": content},
            self._operations[operation].output_shape,
        )
        parsed.setdefault("ResponseMetadata", {})["HTTPStatusCode"] = status
        error = ClientError(parsed, operation)
        if halt is not None and halt(error):
            self._halt = self._halt or error
        raise error

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=body, headers=headers, proxy=self._proxy
            ) as response:
                return response.status, response.headers, await response.read()
        except aiohttp.ConnectionTimeoutError as err:
            raise ConnectTimeoutError(endpoint_url=url, error=err) from err
        except TimeoutError as err:  # aiohttp's SocketTimeoutError and total timeouts
            raise ReadTimeoutError(endpoint_url=url, error=err) from err
        except aiohttp.ClientConnectorError as err:
            raise EndpointConnectionError(endpoint_url=url, error=err) from err
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as err:
            raise ConnectionClosedError(endpoint_url=url, error=err) from err
        except aiohttp.ClientError as err:
            raise HTTPClientError(error=err) from err

    def call(self, operation: str, body: bytes, *, halt: Halt | None = None) -> dict[str, Any]:
        """POST one signed JSON request; the parsed answer, or raise as botocore would.
        An error for which ``halt`` is true stops every call started after it."""
        signer = self._signer()
        return self._run(lambda: self._call(operation, body, signer, halt))

    def send_raw_many(
        self,
        sends: Sequence[RawSend],
        *,
        configuration_set: str = "",
        halt: Halt | None = None,
    ) -> list[str | Exception]:
        """Several SendEmail calls at once (up to the concurrency); per send the MessageId
        or the exception it raised, in order."""

        try:
            signer = self._signer()
        except Exception as err:  # no credentials: every send fails alike
            return [err for _ in sends]

        async def one(send: RawSend) -> str:
            body = raw_body(send, configuration_set)
            return str((await self._call("SendEmail", body, signer, halt))["MessageId"])

        async def every() -> list[str | Exception]:
            results = await asyncio.gather(*(one(s) for s in sends), return_exceptions=True)
            return [_ours(r) for r in results]

        return self._run(every)

    def send_bulk(
        self, base_json: str, entries: Sequence[Mapping[str, Any]], *, halt: Halt | None = None
    ) -> dict[str, Any]:
        """``SendBulkEmail``: ``base_json`` is the campaign's part of the request, serialized
        once (see :func:`bulk_base`); ``entries`` the readers' ``BulkEmailEntries``."""
        entries_json = json.dumps(entries, separators=_COMPACT, check_circular=False)
        body = f'{base_json}"BulkEmailEntries":{entries_json}}}'.encode()
        return self.call("SendBulkEmail", body, halt=halt)

    def close(self) -> None:
        with self._lock:
            self._loop = None
            closer, self._closer = self._closer, None
        if closer is not None:
            closer()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The loop's thread: run it until it is stopped, then close it."""
    try:
        loop.run_forever()
    finally:
        loop.close()


def _shutdown(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, session: aiohttp.ClientSession
) -> None:
    """Close the HTTP session on its loop, then stop the loop and its thread.

    The finalizer may run on the loop's own thread (the garbage collector ran there): waiting
    there for the loop would wait on itself (5 s, then "cannot join current thread", seen in
    CI), so the session is closed by a task and the loop stopped after it."""
    if threading.current_thread() is thread:
        closing = loop.create_task(session.close())
        closing.add_done_callback(lambda _: loop.stop())
        return
    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
    if not loop.is_running():
        loop.close()


def _ours(value: str | BaseException) -> str | Exception:
    """A gathered answer or error; KeyboardInterrupt, SystemExit, cancellation go on up."""
    if isinstance(value, str | Exception):
        return value
    raise value


def raw_body(send: RawSend, configuration_set: str = "") -> bytes:
    """The JSON body of a raw SendEmail; base64 needs no JSON escaping, so it is spliced in
    rather than re-scanned (the raw message is ~30 kB)."""
    head: dict[str, Any] = {"Destination": {"ToAddresses": [send.to]}, "EmailTags": send.tags}
    if configuration_set:
        head["ConfigurationSetName"] = configuration_set
    return b"".join(
        (
            json.dumps(head, separators=_COMPACT)[:-1].encode(),
            b',"Content":{"Raw":{"Data":"',
            base64.b64encode(send.raw),
            b'"}}}',
        )
    )


def bulk_base(request: Mapping[str, Any]) -> str:
    """A SendBulkEmail request without its entries, as the opening of a JSON object that
    :meth:`SesHttp.send_bulk` completes (``{...,`` or ``{``)."""
    if "BulkEmailEntries" in request:
        raise ValueError("the base of a bulk request holds no entries")
    text = json.dumps(request, separators=_COMPACT)
    return text[:-1] + "," if request else "{"


__all__ = ["OPERATIONS", "USER_AGENT", "Halt", "RawSend", "SesHttp", "bulk_base", "raw_body"]
