"""The console in real Chromium (Debian's package, driven by Playwright) against a real server with the demo data.

Every test fails on an uncaught page error or a console error the user did not cause on purpose; screenshots of
what the user saw go to var/screenshots/ (CI keeps them as artifacts).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import ServerProcess
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = ROOT / "var" / "screenshots"
DEMO_ADMIN = ("admin@contrail.demo", "contrail-admin")
DEMO_CUSTOMER = ("traveller@contrail.demo", "contrail-demo")

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - requirements-dev installs it
    sync_playwright = None

if CHROMIUM is None or sync_playwright is None:
    pytest.skip("the console tests need chromium (apt install chromium) and playwright (requirements-dev.txt)",
                allow_module_level=True)

# A refusal the page shows to the user (a declined card is a 402) is logged by Chromium as a failed resource;
# that is the API working, not the console failing.
EXPECTED_CONSOLE = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")
# While a test stops the server on purpose, the streams' reconnection attempts fail until it is back.
RECONNECTING = re.compile(r"WebSocket connection to .* failed|Failed to load resource: net::ERR_CONNECTION_REFUSED"
                          r"|Failed to fetch|the server responded with a status of 503")  # 503: draining on SIGTERM

DEMO_ENV = {"CONTRAIL__DEMO__TRAFFIC_PER_S": "20", "CONTRAIL__SMTP__EMBEDDED_SINK": "true",
            "CONTRAIL__SENDGRID__ALLOW_UNSIGNED": "true",
            # A DSP the carrier has configured but switched off: its campaigns' line items there can be named.
            "CONTRAIL__DSP__PLATFORMS": '[{"name": "ttd", "kind": "ttd", "url": "http://127.0.0.1:9/bid", '
                                        '"enabled": false}]'}


class ThreadedJira:
    """Jira REST v2 (tests/integration/integrations/test_tasks.py's FakeJira) and AEM Assets (test_dam.py's FakeAem)
    on loopback, served from a thread of their own: the console's server opens review tasks in the one and imports
    creatives from the other, and the campaign pages show both."""

    def __init__(self) -> None:
        from aiohttp import web

        from tests.integration.integrations.test_dam import FakeAem
        from tests.integration.integrations.test_tasks import FakeJira
        self.fake = FakeJira()
        self.aem = FakeAem()
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/rest/api/2/issue", self.fake.create)
        app.router.add_get("/rest/api/2/issue/{key}", self.fake.get)
        app.router.add_get("/api/assets/{path:.+}", self.aem.assets)
        self._runner = web.AppRunner(app)
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", 0).start())  # the system's port
            started.set()
            self._loop.run_forever()
        self._thread = threading.Thread(target=serve, name="fake-jira", daemon=True)
        self._thread.start()
        assert started.wait(10), "the fake Jira did not start"
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def env(self) -> dict[str, str]:
        from tests.integration.integrations.test_dam import AEM_TOKEN
        from tests.integration.integrations.test_tasks import EMAIL, TOKEN
        return {"CONTRAIL__INTEGRATIONS__TASK_TOOL": "jira", "CONTRAIL__INTEGRATIONS__JIRA_URL": self.url,
                "CONTRAIL__INTEGRATIONS__JIRA_EMAIL": EMAIL, "CONTRAIL__INTEGRATIONS__JIRA_API_TOKEN": TOKEN,
                "CONTRAIL__INTEGRATIONS__JIRA_PROJECT": "MKT", "CONTRAIL__INTEGRATIONS__TASK_SYNC_INTERVAL_S": "1",
                "CONTRAIL__INTEGRATIONS__DAM": "aem", "CONTRAIL__INTEGRATIONS__DAM_URL": self.url,
                "CONTRAIL__INTEGRATIONS__DAM_TOKEN": AEM_TOKEN, "CONTRAIL__INTEGRATIONS__DAM_SYNC_INTERVAL_S": "1",
                "CONTRAIL__INTEGRATIONS__MAX_ATTEMPTS": "1"}

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def demo_server(data_dir: Path, **env: str) -> ServerProcess:
    """A server as `make run` starts it: migrated, the demo data loaded, demo traffic flowing."""
    server = ServerProcess(data_dir, True, **{**DEMO_ENV, "CONTRAIL__SMTP__PORT": "0", **env})  # the sink's choice
    for command in ("migrate", "seed-demo"):
        done = server.cli(command)
        assert done.returncode == 0, done.stderr
    return server.start()


@pytest.fixture(scope="session")
def jira() -> Iterator[ThreadedJira]:
    fake = ThreadedJira()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory, jira) -> Iterator[ServerProcess]:
    proc = demo_server(tmp_path_factory.mktemp("console") / "var", **jira.env())
    yield proc
    proc.stop()


# Package-scoped, so that one Chromium serves every module here (a launch is about half a second each), and not
# session-scoped: Playwright's sync API runs an event loop in this thread while it is started, and the asyncio
# tests outside this package need the thread to themselves (pytest tears this down on leaving the package).
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


class Console:
    """One browser tab on the console, with what went wrong in it."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        self.tolerate_reconnects = False
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("console", self._console)

    def _console(self, msg) -> None:
        if msg.type != "error" or EXPECTED_CONSOLE.search(msg.text):
            return
        if self.tolerate_reconnects and RECONNECTING.search(msg.text):
            return
        self.errors.append(msg.text)

    def open(self, route: str = "") -> Page:
        self.page.goto(f"{self.base_url}/#/{route}")
        return self.page

    def sign_in(self, email: str, password: str) -> None:
        page = self.open("signin")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.locator("#who").filter(has_text=email).wait_for()

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def console(browser, server) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    tab = Console(context.new_page(), server.url)
    yield tab
    context.close()
    assert tab.errors == [], tab.errors
