"""An SES v2 endpoint for provisioning tests: moto for what moto implements, the rest here.

moto's sesv2 keeps email identities and configuration sets but has no event destinations,
no custom MAIL FROM and no GetAccount. This small HTTP server sits in front of moto:

* CreateConfigurationSetEventDestination, UpdateConfigurationSetEventDestination,
  GetConfigurationSetEventDestinations and PutEmailIdentityMailFromAttributes are answered
  here, after the request is validated against botocore's own sesv2 model (the same
  validator the SES test server uses), and only for configuration sets and identities that
  exist in moto;
* GetEmailIdentity goes to moto and gets the MAIL FROM attributes set here merged in
  (status PENDING: nobody published the MX record);
* GetConfigurationSet goes to moto, whose answer (moto 5.2) nests the stored
  ``SendingOptions`` inside ``SendingEnabled``; it is unwrapped here;
* everything else is forwarded to moto unchanged.

``calls`` records the operations answered here, so tests can see what setup did.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.ses_model import InvalidRequest, SesApi

LOCAL = (
    "CreateConfigurationSetEventDestination",
    "UpdateConfigurationSetEventDestination",
    "GetConfigurationSetEventDestinations",
    "PutEmailIdentityMailFromAttributes",
    "GetEmailIdentity",
    "GetConfigurationSet",
)


class ProvisioningProxy:
    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url.rstrip("/")
        self.api = SesApi(LOCAL)
        self.lock = threading.Lock()
        self.destinations: dict[str, dict[str, dict[str, Any]]] = {}
        self.mail_from: dict[str, dict[str, str]] = {}
        self.calls: Counter[str] = Counter()
        self._http: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ProvisioningProxy:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._handle(self, "GET")

            def do_POST(self) -> None:
                owner._handle(self, "POST")

            def do_PUT(self) -> None:
                owner._handle(self, "PUT")

            def do_DELETE(self) -> None:
                owner._handle(self, "DELETE")

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    @property
    def url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    # -- dispatch ----------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        path, _, query = req.path.partition("?")
        found = self.api.match(method, path)
        if found is None:
            status, headers, payload = self._forward(req, method, body)
            self._reply(req, status, payload, headers.get("x-amzn-ErrorType"))
            return
        route, params = found
        try:
            data = json.loads(body) if body else {}
            self.api.check(route, data, params, query)
        except (ValueError, InvalidRequest) as err:
            self._reply(req, 400, json.dumps({"message": str(err)}).encode(), "BadRequestException")
            return
        with self.lock:
            self.calls[route.operation] += 1
        handler = getattr(self, "_" + route.operation)
        status, answer, error = handler(req, method, body, params, data)
        self._reply(req, status, json.dumps(answer).encode(), error)

    def _reply(
        self, req: BaseHTTPRequestHandler, status: int, payload: bytes, error: str | None
    ) -> None:
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(payload)))
        if error:
            req.send_header("x-amzn-ErrorType", error)
        req.end_headers()
        req.wfile.write(payload)

    def _forward(
        self, req: BaseHTTPRequestHandler, method: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {
            k: v
            for k, v in req.headers.items()
            if k.lower() not in {"host", "content-length", "connection"}
        }
        forward = urllib.request.Request(
            self.moto_url + req.path, data=body or None, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(forward, timeout=10) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()

    def _moto_get(self, req: BaseHTTPRequestHandler, path: str) -> tuple[int, Any, str | None]:
        headers = {
            k: v for k, v in req.headers.items() if k.lower() in {"authorization", "x-amz-date"}
        }
        get = urllib.request.Request(self.moto_url + path, method="GET", headers=headers)
        try:
            with urllib.request.urlopen(get, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}"), None
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {"message": raw.decode(errors="replace")[:200]}
            return err.code, answer, err.headers.get("x-amzn-ErrorType") or "NotFoundException"

    # -- operations --------------------------------------------------------------------------

    def _config_set_exists(self, req: BaseHTTPRequestHandler, name: str) -> bool:
        status, _, _ = self._moto_get(req, f"/v2/email/configuration-sets/{name}")
        return status == 200

    def _not_found(self, what: str) -> tuple[int, Any, str]:
        return 404, {"message": f"{what} does not exist."}, "NotFoundException"

    def _CreateConfigurationSetEventDestination(
        self, req: Any, method: str, body: bytes, params: dict[str, str], data: dict[str, Any]
    ) -> tuple[int, Any, str | None]:
        name = params["ConfigurationSetName"]
        if not self._config_set_exists(req, name):
            return self._not_found(f"Configuration set <{name}>")
        with self.lock:
            dests = self.destinations.setdefault(name, {})
            if data["EventDestinationName"] in dests:
                return 400, {"message": "already exists"}, "AlreadyExistsException"
            dests[data["EventDestinationName"]] = dict(data["EventDestination"])
        return 200, {}, None

    def _UpdateConfigurationSetEventDestination(
        self, req: Any, method: str, body: bytes, params: dict[str, str], data: dict[str, Any]
    ) -> tuple[int, Any, str | None]:
        name, dest = params["ConfigurationSetName"], params["EventDestinationName"]
        with self.lock:
            dests = self.destinations.get(name, {})
            if dest not in dests:
                return self._not_found(f"Event destination {dest}")
            dests[dest] = dict(data["EventDestination"])
        return 200, {}, None

    def _GetConfigurationSetEventDestinations(
        self, req: Any, method: str, body: bytes, params: dict[str, str], data: dict[str, Any]
    ) -> tuple[int, Any, str | None]:
        name = params["ConfigurationSetName"]
        if not self._config_set_exists(req, name):
            return self._not_found(f"Configuration set <{name}>")
        with self.lock:
            found = [
                {**d, "Name": n, "Enabled": d.get("Enabled", False)}
                for n, d in self.destinations.get(name, {}).items()
            ]
        return 200, {"EventDestinations": found}, None

    def _PutEmailIdentityMailFromAttributes(
        self, req: Any, method: str, body: bytes, params: dict[str, str], data: dict[str, Any]
    ) -> tuple[int, Any, str | None]:
        identity = params["EmailIdentity"]
        status, _, _ = self._moto_get(req, f"/v2/email/identities/{identity}")
        if status != 200:
            return self._not_found(f"Email identity {identity}")
        with self.lock:
            self.mail_from[identity] = {
                "MailFromDomain": data.get("MailFromDomain", ""),
                "MailFromDomainStatus": "PENDING",
                "BehaviorOnMxFailure": data.get("BehaviorOnMxFailure", "USE_DEFAULT_VALUE"),
            }
        return 200, {}, None

    def _GetEmailIdentity(
        self, req: Any, method: str, body: bytes, params: dict[str, str], data: dict[str, Any]
    ) -> tuple[int, Any, str | None]:
        identity = params["EmailIdentity"]
        status, answer, error = self._moto_get(req, f"/v2/email/identities/{identity}")
        if status == 200:
            with self.lock:
                if identity in self.mail_from:
                    answer["MailFromAttributes"] = dict(self.mail_from[identity])
        return status, answer, error

    def _GetConfigurationSet(
        self, req: Any, method: str, body: bytes, params: dict[str, str], data: dict[str, Any]
    ) -> tuple[int, Any, str | None]:
        name = params["ConfigurationSetName"]
        status, answer, error = self._moto_get(req, f"/v2/email/configuration-sets/{name}")
        options = answer.get("SendingOptions") if status == 200 else None
        if isinstance(options, dict) and isinstance(options.get("SendingEnabled"), dict):
            options["SendingEnabled"] = options["SendingEnabled"].get("SendingEnabled", True)
        return status, answer, error
