"""Real headless Chromium for tests (Debian's /usr/bin/chromium driven by Playwright).

Nothing is downloaded: Playwright is pointed at the system browser. Use it either as the
pytest fixtures ``browser`` (one per test module) and ``new_page`` (import them by their
function names, which keeps ruff's F811 quiet)::

    from tests.browser import browser_fixture, new_page_fixture, save_screenshot  # noqa: F401

    @pytest.mark.browser
    def test_page(new_page):
        page = new_page(width=375)
        page.set_content("<p>hi</p>")
        save_screenshot(page, "my-page-375")

or, outside pytest, as a context manager::

    with chromium() as b, open_page(b, width=650) as page:
        page.goto("http://127.0.0.1:8000/")

Pages block every network request that is not to 127.0.0.1/localhost (or data:/about:),
and record the blocked URLs in ``page.blocked`` so tests can assert that nothing external
was fetched. Screenshots go to ``artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
_LOCAL = re.compile(
    r"^(?:data:|about:|blob:|https?://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?/)"
)


def chromium_available() -> bool:
    """True when the system Chromium and the Playwright package are both present."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return False
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def chromium(executable: Path = CHROMIUM) -> Iterator[Any]:
    """A launched headless Chromium (Playwright Browser) with a throwaway profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(
    browser: Any,
    *,
    width: int = 1024,
    height: int = 900,
    color_scheme: str = "light",
    allow_network: bool = False,
) -> Iterator[Any]:
    """A fresh page in its own context (no shared cookies) at the given viewport."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        color_scheme=color_scheme,
    )
    page = context.new_page()
    blocked: list[str] = []
    page.blocked = blocked

    def _route(route: Any) -> None:
        url = route.request.url
        if allow_network or _LOCAL.match(url):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", _route)
    try:
        yield page
    finally:
        context.close()


def save_screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG under artifacts/screenshots/<name>.png and return its path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "page"
    path = SCREENSHOT_DIR / f"{safe}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# Module scope: Playwright's sync API runs an event loop in the main thread while it is
# open, which breaks later modules' ASGI test clients ("Already running asyncio").
@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Any]:
    """One Chromium for the whole test session; skips cleanly where there is none."""
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    with chromium() as b:
        yield b


@pytest.fixture(name="new_page")
def new_page_fixture(browser: Any) -> Iterator[Callable[..., Any]]:
    """Factory: ``new_page(width=375, color_scheme="dark")``; pages close after the test."""
    with ExitStack() as stack:

        def make(**kwargs: Any) -> Any:
            return stack.enter_context(open_page(browser, **kwargs))

        yield make
