"""The SES test server in another process, and its control API over HTTP.

:class:`SesServerProcess` runs ``python -m tests.support.ses_server`` as a child (for tests
that SIGKILL the sender, and the benchmarks) and reads its URL; :class:`SesServerClient`
drives the ``/_test/`` control API of a server running anywhere. Split from
:mod:`tests.support.ses_server` (the server itself), which re-exports both.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any


class SesServerClient:
    """The control API of a server running elsewhere (e.g. ``python -m ...ses_server``)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.load(resp)

    def health(self) -> bool:
        return bool(self._call("GET", "/_test/health").get("ok"))

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_test/config")
        return result

    def configure(self, **switches: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/_test/config", switches)
        return result

    def reset(self, *, config: bool = False) -> None:
        self._call("POST", "/_test/reset", {"config": config})

    def fail_next(
        self,
        error: str,
        *,
        count: int = 1,
        operation: str | None = None,
        message: str | None = None,
        status: int | None = None,
        after: int = 0,
    ) -> None:
        body = {
            "error": error,
            "count": count,
            "operation": operation,
            "message": message,
            "after": after,
        }
        if status is not None:
            body["status"] = status
        self._call("POST", "/_test/fail-next", body)

    def messages(
        self, *, since: int = 0, raw: bool = False, render: bool = False
    ) -> list[dict[str, Any]]:
        query = f"?since={since}&raw={int(raw)}&render={int(render)}"
        result: list[dict[str, Any]] = self._call("GET", "/_test/messages" + query)["messages"]
        return result

    def recipients(self) -> dict[str, int]:
        result: dict[str, int] = self._call("GET", "/_test/recipients")
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_test/stats")
        return result


class SesServerProcess:
    """Run the server as a child process: ``with SesServerProcess(latency=0.02) as p: p.url``.

    Switches are passed as ``--config`` JSON; ``p.control`` is a :class:`SesServerClient`."""

    def __init__(self, *, python: str | None = None, **switches: Any) -> None:
        self._python = python or sys.executable
        self._switches = switches
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.control: SesServerClient | None = None

    def start(self) -> SesServerProcess:
        args = [self._python, "-m", "tests.support.ses_server", "--port", "0"]
        if self._switches:
            args += ["--config", json.dumps(self._switches)]
        # Run from the repository root so ``tests.support`` imports wherever the caller is.
        root = str(Path(__file__).resolve().parents[2])
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=root)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"ses_server did not start: {line!r}")
        self.url = m.group(1)
        self.control = SesServerClient(self.url)
        return self

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("not running")
        return self._proc.pid

    def __enter__(self) -> SesServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
