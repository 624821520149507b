"""Fixtures of the dashboard's browser tests: a gateway in its own thread, Debian's Chromium.

The browser tests use pytest-playwright's synchronous `page`; the sync Playwright API cannot
run inside an asyncio loop, so the gateway gets an event loop of its own in a background
thread (`LiveGateway`), with blocking `start`, `stop`, `restart` and `publish` for the test.

Chromium is Debian's (`/usr/bin/chromium`): Playwright's own browser download cannot work on
an offline machine. Without it, or without Playwright, a browser test skips locally and
fails in CI (`require_browser`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from support import IN_CI, require_tool
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings

T = TypeVar("T")

CHROMIUM = os.environ.get("TIDEWIRE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    # Nothing but the local gateway: a page that tried the internet would hang, not fail.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]
WAIT = 10.0


class LiveGateway:
    """A Tidewire gateway served by an event loop in a background thread."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.gateway: Gateway | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="live-gateway", daemon=True
        )
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
        """Run `coroutine` in the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(self, **overrides: Any) -> Gateway:
        settings = {"port": 0, "internal_port": 0, **self.settings, **overrides}

        async def start() -> Gateway:
            # Built inside the loop: the broker and hub belong to it.
            gateway = Gateway(GatewaySettings(**settings))
            await gateway.start()
            return gateway

        self.gateway = self.call(start())
        return self.gateway

    def stop(self) -> None:
        if self.gateway is not None and self.gateway.running:
            self.call(self.gateway.stop())

    def restart(self) -> Gateway:
        """Stop, then start a new gateway (new epochs, empty history) on the same ports."""
        old = self.running
        self.stop()
        return self.start(port=old.port, internal_port=old.internal_port)

    @property
    def running(self) -> Gateway:
        assert self.gateway is not None, "the gateway was not started"
        return self.gateway

    @property
    def url(self) -> str:
        """The dashboard's address (the control plane's root)."""
        return self.running.internal_url + "/"

    def publish(self, *messages: dict[str, Any]) -> None:
        async def publish() -> None:
            for message in messages:
                await self.running.publish(message)

        self.call(publish())

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(WAIT)
            self._loop.close()


@pytest.fixture
def live_gateway() -> Iterator[Callable[..., LiveGateway]]:
    """`live_gateway(**settings)`: a started LiveGateway, stopped after the test."""
    started: list[LiveGateway] = []

    def factory(**settings: Any) -> LiveGateway:
        live = LiveGateway(**settings)
        started.append(live)
        live.start()
        return live

    yield factory
    for live in started:
        live.close()


def require_browser() -> None:
    """Skip (fail in CI) when Chromium or Playwright is missing."""
    if importlib.util.find_spec("pytest_playwright") is None:
        message = "pytest-playwright is not installed (pip install -e '.[dev]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    if not os.access(CHROMIUM, os.X_OK):
        require_tool("chromium", "apt-get install -y --no-install-recommends chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options, pointed at Debian's Chromium."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": CHROMIUM_ARGS,
        "chromium_sandbox": False,
    }


@pytest.fixture(scope="module")
def browser_context_args(pytestconfig: pytest.Config, _pw_artifacts_folder: Any) -> dict[str, Any]:
    """pytest-playwright's context options (module scoped, see `playwright` below)."""
    args: dict[str, Any] = {"viewport": {"width": 1440, "height": 900}, "accept_downloads": True}
    if pytestconfig.getoption("--video", None) in ("on", "retain-on-failure"):
        args["record_video_dir"] = _pw_artifacts_folder.name
    return args


# pytest-playwright starts Playwright once per session. Its sync API leaves the event loop
# of its dispatcher marked as running in the main thread until it is stopped, and from then
# on every pytest-asyncio test of the session fails ("Runner.run() cannot be called from a
# running event loop"). So Playwright and the browser live for one test module here, and
# are stopped before the async tests of other modules run. Same fixtures otherwise.


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="module")
def browser_type(playwright: Any, browser_name: str) -> Any:
    return getattr(playwright, browser_name)


@pytest.fixture(scope="module")
def launch_browser(browser_type_launch_args: dict[str, Any], browser_type: Any) -> Any:
    def launch(**kwargs: Any) -> Any:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser: Callable[[], Any]) -> Iterator[Any]:
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture
def browser_page(request: pytest.FixtureRequest) -> Any:
    """pytest-playwright's `page`, after checking that a browser can be had at all."""
    require_browser()
    return request.getfixturevalue("page")
