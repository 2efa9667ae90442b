"""The server goes away and comes back: the console says so at once, never shows stale data as healthy, and picks up
its polling and its live stream again by itself."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_ADMIN, Console, demo_server

# Readiness answers 503 for the instant between SIGTERM and the listener closing (it is draining): Chromium logs
# that as a failed resource, which is the server saying so, not the console failing.
DRAINING = re.compile(r"Failed to load resource: the server responded with a status of 503")


def test_the_console_notices_the_server_leaving_and_resumes_when_it_is_back(browser, tmp_path):
    own = demo_server(tmp_path / "var")
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    console = Console(context.new_page(), own.url)
    try:
        page = console.page
        frames: list[tuple[float, str]] = []  # (when, socket url) of every message a stream received

        def watch(ws) -> None:
            ws.on("framereceived", lambda _frame: frames.append((time.monotonic(), ws.url)))

        page.on("websocket", watch)
        page.clock.install()  # time flows as usual; the test may skip the stream's reconnect backoff ahead
        console.sign_in(*DEMO_ADMIN)
        console.open("bidding")  # it streams /v1/stream/events
        pill = page.locator("#health")
        banner = page.locator("#banner")
        expect(pill).to_have_text("healthy")
        expect(banner).to_be_hidden()
        _wait_for(page, lambda: any("/v1/stream/events" in url for _, url in frames), 15, "the event stream to flow")

        # SIGTERM: within a few seconds the header says unreachable and the banner shows; nothing says healthy.
        console.tolerate_reconnects = True
        own.terminate()
        expect(pill).to_have_text("server unreachable", timeout=6_000)
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("The server is not answering")
        expect(page.get_by_text("healthy", exact=True)).to_have_count(0)
        console.shot("reconnect-down")

        # A new process on the same ports and data: the pill, the banner and the stream recover with no user action.
        restarted = time.monotonic()
        own.start()
        # The stream retries with a backoff that doubles up to 15 s: its next try comes within that, sooner here.
        page.clock.fast_forward(15_000)
        expect(pill).to_have_text("healthy", timeout=10_000)
        expect(banner).to_be_hidden()
        _wait_for(page, lambda: any(t > restarted and "/v1/stream/events" in url for t, url in frames), 25,
                  "the event stream to resume")
        console.shot("reconnect-back")
        console.errors[:] = [e for e in console.errors if not DRAINING.search(e)]
        console.tolerate_reconnects = False
        page.wait_for_timeout(2_500)  # one more round of polling, now held to the usual standard
        assert console.errors == [], console.errors
    finally:
        context.close()
        own.stop()


def _wait_for(page, condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        page.wait_for_timeout(200)  # (Playwright delivers the socket events while it waits)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
