"""The outbox transport writes whole .eml files atomically, one per delivery."""

from __future__ import annotations

import contextlib
import email
import threading
from concurrent.futures import ThreadPoolExecutor
from email import policy
from pathlib import Path

import pytest

from mailer.config import Settings
from mailer.errors import FatalSendError
from mailer.transports import make_transport
from mailer.transports.outbox import OutboxTransport
from tests.transport_helpers import campaign, outgoing


def test_writes_parseable_eml_named_by_delivery(tmp_path: Path) -> None:
    transport = make_transport(Settings(outbox_dir=tmp_path))
    assert isinstance(transport, OutboxTransport)
    assert (transport.max_batch, transport.wants_raw) == (1, True)
    msg = outgoing("reader@example.org", 42, body="Today in China")
    [result] = transport.send(campaign(7), [msg])
    assert result.ok and result.message_id == "42.eml"
    path = tmp_path / "7" / "42.eml"
    assert path.read_bytes() == msg.raw
    parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert parsed["To"] == "reader@example.org"
    assert parsed.get_body(("plain",)).get_content().strip() == "Today in China"  # type: ignore[union-attr]
    transport.close()


def test_resend_replaces_and_test_sends_get_unique_names(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path)
    transport.send(campaign(), [outgoing("a@example.org", 5, body="first")])
    transport.send(campaign(), [outgoing("a@example.org", 5, body="second")])
    files = sorted(p.name for p in (tmp_path / "7").iterdir())
    assert files == ["5.eml"]
    assert b"second" in (tmp_path / "7" / "5.eml").read_bytes()
    r1, r2 = transport.send(
        campaign(), [outgoing("t@example.org", 0), outgoing("t@example.org", 0)]
    )
    assert r1.message_id != r2.message_id
    assert r1.message_id is not None and r1.message_id.startswith("test-")
    assert len(list((tmp_path / "7").glob("*.eml"))) == 3


def test_concurrent_writes_are_atomic_for_readers(tmp_path: Path) -> None:
    """A reader listing the folder while 8 threads write never sees a partial file."""
    transport = OutboxTransport(tmp_path)
    big = "x" * 100_000
    messages = [outgoing(f"r{i}@example.org", i + 1, body=f"{i} {big}") for i in range(60)]
    sizes = {f"{m.delivery_id}.eml": len(m.raw) for m in messages}
    folder = tmp_path / "7"
    folder.mkdir()
    done = threading.Event()
    seen: list[tuple[str, int]] = []

    def watch() -> None:
        while not done.is_set():
            for path in folder.glob("*.eml"):
                with contextlib.suppress(FileNotFoundError):  # replaced between list and read
                    seen.append((path.name, len(path.read_bytes())))

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda m: transport.send(campaign(), [m])[0], messages))
    done.set()
    watcher.join()
    assert all(r.ok for r in results)
    assert seen, "the watcher never saw a file"
    assert all(size == sizes[name] for name, size in seen)
    assert sorted(p.name for p in folder.iterdir()) == sorted(sizes)  # no temp files left


def test_unusable_directory_is_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    transport = OutboxTransport(blocker)
    with pytest.raises(FatalSendError, match="cannot create"):
        transport.send(campaign(), [outgoing("a@example.org")])
