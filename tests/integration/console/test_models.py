"""The Models page in Chromium: an admin sees the bid model with no trained version yet and what to do about it,
trains one from logged shown ads and clicks, sees it live with its held-out metrics, the metrics chart and the
calibration curve, and rolls back to the configured model (the API agrees); then watches a canary beside the live
version with its comparison, is refused a second one, aborts it, and starts another from a version's row and
promotes it (the API agrees each time)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from bench.server import ServerProcess
from tests.integration.bidding.helpers import banner_request
from tests.integration.console.conftest import DEMO_ADMIN, DEMO_ENV
from tests.integration.console.helpers import admin_token, call

# A retrain as soon as 1,000 shown ads with 20 clicks are logged, counting every ad, and only when asked; no demo
# traffic, so the logged rows are exactly the simulated ones.
LEARNING = {"CONTRAIL__DEMO__TRAFFIC_PER_S": "0", "CONTRAIL__LEARNING__MIN_ROWS": "1000",
            "CONTRAIL__LEARNING__MIN_CLICKS": "20", "CONTRAIL__LEARNING__LABEL_DELAY_S": "0",
            "CONTRAIL__LEARNING__RETRAIN_INTERVAL_S": "0"}
# Canaries take half the bid batches, and no scoring pass here comes near the p95 limit: the page is under test,
# not the verdict (min_calls, 200, is never reached either, so only the admin ends a canary).
CANARY = {"CONTRAIL__CANARY__SHARE": "0.5", "CONTRAIL__CANARY__MAX_P95_MS": "1000"}
ROWS = 10_000  # about 100 clicks at the simulator's ~1 % click rate
SCREENSHOT = Path("/tmp/models.png")


def log_simulated(events_db: Path, seed: int = 4, rows: int = ROWS) -> int:
    """Shown ads and their clicks as the win and click notices log them, for a seed's travellers and hidden truth
    (tests/integration/learning/test_retrain.py's _log_simulated), written into the server's event log before it
    starts; the number of clicks."""
    from eval.ctr import World
    from ml import features

    world = World(seed)
    rng = np.random.default_rng(seed)
    imps = world.impressions(rng, np.sort(rng.uniform(0, 3600, rows)))
    now = time.time()
    events = []
    for n, (row, clicked, at) in enumerate(zip(imps["x"], imps["clicked"], imps["at"], strict=True)):
        bid_id = f"{n:012x}sim{seed}"
        columns, values = features.to_sparse(row)
        shown_at = now - 3600 + float(at)
        events.append((shown_at, "Shown", json.dumps({"bid_id": bid_id, "campaign_id": "c", "at": shown_at,
                                                      "i": columns, "v": values})))
        if clicked:
            events.append((shown_at + 1, "Click", json.dumps({"bid_id": bid_id, "campaign_id": "c", "user_id": "u"})))
    with sqlite3.connect(events_db) as db:
        db.executemany("INSERT INTO events (at, type, payload) VALUES (?, ?, ?)", events)
    return int(imps["clicked"].sum())


@pytest.fixture(scope="module")
def learning_server(tmp_path_factory) -> Iterator[tuple[ServerProcess, int]]:
    """A demo server of its own (its bid model's versions are this test's), with simulated outcomes logged."""
    data = tmp_path_factory.mktemp("models") / "var"
    server = ServerProcess(data, True, **{**DEMO_ENV, "CONTRAIL__SMTP__PORT": "0", **LEARNING,
                                                **CANARY})
    for command in ("migrate", "seed-demo"):
        done = server.cli(command)
        assert done.returncode == 0, done.stderr
    clicks = log_simulated(data / "events.db")
    server.start()
    yield server, clicks
    server.stop()


@pytest.fixture
def server(learning_server) -> ServerProcess:  # the console fixture's tab opens this server
    return learning_server[0]


def test_admin_trains_sees_the_metrics_and_calibration_and_rolls_back(learning_server, console):
    server, clicks = learning_server
    base = server.url
    token = admin_token(base)
    console.sign_in(*DEMO_ADMIN)
    page = console.open("models")
    page.reload()  # a fresh document: nothing of the page shown after signing in is still rendering
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    card = page.get_by_role("region", name="bidnet", exact=True)
    live = card.locator(".models-live")
    rows = card.get_by_role("table", name="Versions").get_by_role("row")

    # Nothing trained yet: the configured model is live, and the empty charts say what to do.
    expect(live).to_have_text("default-v1")
    expect(rows).to_have_count(2)  # a header and the configured model
    expect(card.locator("[data-chart=history]")).to_contain_text(
        "No trained version yet: the bid model trains from won bids and clicks once learning.min_rows are logged")
    expect(card.locator("[data-chart=calibration]")).to_contain_text("default-v1 was not trained here")
    # The lifetime-value model (fitted by seed-demo) is no click model: its own holdout figures stand in for AUC.
    ltv = page.get_by_role("region", name="ltv", exact=True)
    expect(ltv).to_contain_text(re.compile(r"Live holdout\s*MAE \d+\.\d{3}, RMSE \d+\.\d{3}, accuracy \d+\.\d%"))
    expect(ltv.locator("[data-chart=calibration]")).to_contain_text("does not predict a click rate")
    expect(ltv).not_to_contain_text("not trained here")
    ltv.screenshot(path=str(console.shot("models-ltv")))
    expect(card).to_contain_text("No retrain since the server started")

    # Train now: the candidate beats the configured model (which ranks at random) and goes live.
    card.get_by_role("button", name="Train now").click()
    result = card.locator(".models-train-result")
    expect(result).to_contain_text(re.compile(r"This run: promoted candidate bidnet-1: held-out AUC 0\.\d{3} vs "
                                              r"0\.\d{3} live, log-loss 0\.\d{4} vs 0\.\d{4}"), timeout=30_000)
    expect(result).to_contain_text(re.compile(rf"{ROWS:,} rows, {clicks} clicks · took [\d.]+ s"))
    expect(card.get_by_role("button", name="Train now")).to_be_enabled()
    expect(live).to_have_text("bidnet-1")
    expect(rows).to_have_count(3)
    trained = card.get_by_role("row", name=re.compile(r"^bidnet-1\b"))
    expect(trained).to_contain_text(re.compile(r"bidnet-1\s*live\s*trained.*0\.\d{3} ± 0\.\d{3}\s*0\.\d{4}\s*0\.\d{4}"
                                               rf"\s*{ROWS:,} \({clicks}\)"))
    configured = card.get_by_role("row", name=re.compile(r"^default-v1\b"))
    expect(configured).to_contain_text(re.compile(r"default-v1\s*retired\s*config"))
    expect(card.locator(".models-run")).to_contain_text(re.compile(rf"promoted.*{ROWS:,} rows, {clicks} clicks", re.S))

    # The charts: held-out AUC and log-loss over the trained versions, and the live version's calibration.
    history = card.locator("[data-chart=history]")
    expect(history.locator("canvas")).to_be_visible()
    expect(history).to_have_attribute("data-points", "1")
    expect(history).to_have_attribute("aria-label", re.compile(r"bidnet-1: AUC 0\.\d{3}, log-loss 0\.\d{4}"))
    calibration = card.locator("[data-chart=calibration]")
    expect(calibration.locator("canvas")).to_be_visible()
    expect(calibration).to_have_attribute("aria-label", re.compile(r"Calibration of bidnet-1.*predicted.*observed"))
    assert int(calibration.get_attribute("data-points") or 0) > 3  # the bins, and the diagonal's two ends
    expect(card).to_contain_text(re.compile(r"bidnet-1 on its [\d,]+ held-out rows"))
    page.wait_for_timeout(300)  # the charts' legends settle
    console.shot("models-trained")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Roll back to the configured model: asked first, then live on the page and in the API.
    expect(trained.get_by_role("button")).to_have_count(0)  # the live version has nothing to roll back to
    configured.get_by_role("button", name="Roll back").click()
    confirm = card.get_by_role("region", name="Confirm the change to bidnet")
    expect(confirm).to_contain_text("Roll back bidnet to default-v1? It replaces bidnet-1")
    expect(live).to_have_text("bidnet-1")  # nothing changed yet
    confirm.get_by_role("button", name="Confirm: make default-v1 live").click()
    expect(card.get_by_role("status").filter(has_text="default-v1 is live (rolled back from bidnet-1)")).to_be_visible()
    expect(confirm).to_be_hidden()
    expect(live).to_have_text("default-v1")
    expect(configured).to_contain_text(re.compile(r"default-v1\s*live\s*config"))
    expect(trained).to_contain_text(re.compile(r"bidnet-1\s*rolled back\s*trained"))
    expect(trained.get_by_role("button", name="Make live")).to_be_visible()
    expect(calibration).to_contain_text("default-v1 was not trained here")
    expect(history.locator("canvas")).to_be_visible()  # the trained version's metrics stay on the chart
    listing = call(base, "GET", "/v1/admin/models/bidnet", token=token)
    assert listing["live"] == listing["serving"] == "default-v1"
    assert [(v["version"], v["status"]) for v in listing["versions"]] == [("bidnet-1", "rolled_back"),
                                                                          ("default-v1", "live")]
    console.shot("models-rolled-back")


def recorded(base: str, token: str, label: str, folder: Path) -> str:
    """A kept bidnet version that is not live: a weights file reloaded (it goes live), then the live version put
    back (tests/integration/learning/test_canary.py's _recorded_bidnet)."""
    from ml.model import make_default

    live = call(base, "GET", "/v1/admin/models/bidnet", token=token)["live"]
    path = folder / f"{label}.npz"
    make_default(label, seed=11).save(path)
    assert call(base, "POST", "/v1/admin/model/reload", {"path": str(path)}, token=token)["version"] == label
    assert call(base, "POST", "/v1/admin/models/bidnet/rollback", {"version": live}, token=token)["version"] == live
    return label


def bids(base: str, token: str, n: int) -> None:
    """n bid requests from an exchange, one at a time (each one batch, scored by the canary or the live version)."""
    key = call(base, "POST", "/v1/admin/api-keys", {"name": "canary bids", "role": "exchange"}, token=token)["key"]
    for i in range(n):
        request = urllib.request.Request(f"{base}/v1/bid", method="POST",
                                         data=json.dumps(banner_request(f"c{i}", user_id=f"u{i % 20}")).encode(),
                                         headers={"X-Api-Key": key, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status in (200, 204)


@pytest.fixture
def no_canary_left(learning_server) -> Iterator[str]:
    """An admin's token; a canary a failed test left running is aborted, so that the next test can start one."""
    base = learning_server[0].url
    token = admin_token(base)
    yield token
    if call(base, "GET", "/v1/admin/models/bidnet", token=token)["canary"] is not None:
        call(base, "POST", "/v1/admin/models/bidnet/canary/abort", token=token)


def open_bidnet(console):
    console.sign_in(*DEMO_ADMIN)
    page = console.open("models")
    page.reload()
    return page, page.get_by_role("region", name="bidnet", exact=True)


def test_admin_sees_a_running_canary_against_live_is_refused_a_second_and_aborts_it(learning_server, console,
                                                                                     no_canary_left, tmp_path):
    base, token = learning_server[0].url, no_canary_left
    live = call(base, "GET", "/v1/admin/models/bidnet", token=token)["live"]
    version = recorded(base, token, "bidnet-canary-a", tmp_path)
    other = recorded(base, token, "bidnet-canary-b", tmp_path)
    started = call(base, "POST", "/v1/admin/models/bidnet/canary", {"version": version}, token=token)
    assert (started["version"], started["share"]) == (version, 0.5)
    bids(base, token, 60)
    arms = call(base, "GET", "/v1/admin/models/bidnet", token=token)["canary"]["comparison"]
    assert arms["canary"]["calls"] > 0 and arms["live"]["calls"] > 0

    page, card = open_bidnet(console)
    panel = card.get_by_role("region", name="Canary of bidnet")
    expect(panel).to_contain_text(f"{version} serves 50 % of the traffic beside {live}")
    expect(panel.locator(".models-canary-left")).to_have_text(re.compile(r"^23 h 5\d min left$"))
    expect(panel).to_contain_text(re.compile(r"Started .+ by .+ · judged at .+: promoted if it held"))
    compare = panel.get_by_role("table", name="bidnet: canary against live")
    for arm, label, name in (("canary", "Canary", version), ("live", "Live", live)):
        expect(compare.get_by_role("row", name=re.compile(rf"^{label}\b"))).to_contain_text(re.compile(
            rf"{label}\s*{name}\s*{arms[arm]['calls']}\s*0\s*0\.00 %\s*\d+\.\d{{3}}$"))
    expect(panel).to_contain_text("Limits: p95 ≤ 1000 ms, error rate ≤ 1.00 %.")  # this server's [canary]
    row = card.get_by_role("row", name=re.compile(rf"^{version}\b"))
    expect(row).to_contain_text(re.compile(rf"{version}\s*canary\s*file.*canary ↑"))
    expect(row.get_by_role("button")).to_have_count(0)
    page.wait_for_timeout(300)
    console.shot("models-canary-running")
    page.screenshot(path="/tmp/console-canary-running.png", full_page=True)
    card.screenshot(path="/tmp/console-canary-card.png")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the panel wraps, its table scrolls in its box
    page.wait_for_timeout(200)
    panel.screenshot(path="/tmp/console-canary-phone.png")
    page.set_viewport_size({"width": 1280, "height": 860})

    # A second canary is refused with the server's reason, after the confirm step.
    card.get_by_role("row", name=re.compile(rf"^{other}\b")).get_by_role("button", name=f"Start a canary of {other}")\
        .click()
    confirm = card.get_by_role("region", name="Confirm the change to bidnet")
    expect(confirm).to_contain_text(f"Start a canary of bidnet with {other}?")
    confirm.get_by_role("button", name=f"Confirm: start canary {other}").click()
    refusal = card.get_by_role("alert").filter(has_text=f"bidnet already has a canary running ({version}); promote "
                                                        "or abort it first")
    expect(refusal).to_be_visible()
    page.screenshot(path="/tmp/console-canary-refused.png", full_page=True)
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(refusal).to_be_hidden()

    # Abort: asked first, then the canary is gone, the live version unchanged and the decision shown.
    panel.get_by_role("button", name="Abort").click()
    ending = panel.get_by_role("region", name="Confirm the end of bidnet's canary")
    expect(ending).to_contain_text(f"Abort the canary {version}? It is marked rolled back and {live} serves all "
                                   "traffic again.")
    expect(compare).to_be_visible()  # nothing changed yet
    ending.get_by_role("button", name=f"Confirm: abort {version}").click()
    expect(panel.get_by_role("status")).to_have_text(f"The canary {version} is aborted: {live} serves all traffic "
                                                     "again.")
    expect(compare).to_be_hidden()
    expect(panel.locator(".models-canary-last")).to_contain_text(re.compile(
        rf"Last canary: {version}\s*aborted\s*aborted by an admin · \S"))
    expect(panel).to_contain_text("No canary running")
    expect(card.locator(".models-live")).to_have_text(live)
    expect(row).to_contain_text(re.compile(rf"{version}\s*rolled back"))
    expect(row.get_by_role("button", name=f"Start a canary of {version}")).to_be_visible()
    model = call(base, "GET", "/v1/admin/models/bidnet", token=token)
    assert model["canary"] is None and model["live"] == model["serving"] == live
    assert (model["last_canary"]["version"], model["last_canary"]["decision"]) == (version, "aborted")
    page.screenshot(path="/tmp/console-canary-aborted.png", full_page=True)
    card.screenshot(path="/tmp/console-canary-aborted-card.png")


def test_admin_starts_a_canary_from_a_version_row_and_promotes_it(learning_server, console, no_canary_left,
                                                                  tmp_path):
    base, token = learning_server[0].url, no_canary_left
    live = call(base, "GET", "/v1/admin/models/bidnet", token=token)["live"]
    version = recorded(base, token, "bidnet-canary-c", tmp_path)

    page, card = open_bidnet(console)
    row = card.get_by_role("row", name=re.compile(rf"^{version}\b"))
    row.get_by_role("button", name=f"Start a canary of {version}").click()
    confirm = card.get_by_role("region", name="Confirm the change to bidnet")
    expect(confirm).to_contain_text(f"Start a canary of bidnet with {version}? It serves canary.share of the traffic "
                                    f"beside {live}")
    confirm.get_by_role("button", name=f"Confirm: start canary {version}").click()
    said = card.get_by_role("status").filter(has_text=re.compile(rf"^{version} is a canary: 50 % of the traffic "
                                                                 r"until \S"))
    expect(said).to_be_visible()
    panel = card.get_by_role("region", name="Canary of bidnet")
    expect(panel).to_contain_text(f"{version} serves 50 % of the traffic beside {live}")
    expect(row).to_contain_text(re.compile(rf"{version}\s*canary"))
    compare = panel.get_by_role("table", name="bidnet: canary against live")
    expect(compare.get_by_role("row", name=re.compile(r"^Canary\b"))).to_contain_text(
        re.compile(rf"Canary\s*{version}\s*0\s*0\s*–\s*–$"))  # no call yet: no rate, no p95
    assert call(base, "GET", "/v1/admin/models/bidnet", token=token)["canary"]["version"] == version

    panel.get_by_role("button", name="Promote now").click()
    ending = panel.get_by_role("region", name="Confirm the end of bidnet's canary")
    expect(ending).to_contain_text(f"Promote {version} live now? It replaces {live} (retired)")
    ending.get_by_role("button", name=f"Confirm: promote {version}").click()
    expect(panel.get_by_role("status")).to_have_text(f"{version} is live (promoted from its canary).")
    expect(said).to_be_hidden()  # what the versions section said is no longer news
    expect(card.locator(".models-live")).to_have_text(version)
    expect(compare).to_be_hidden()
    expect(panel.locator(".models-canary-last")).to_contain_text(re.compile(
        rf"Last canary: {version}\s*promoted\s*promoted by an admin · \S"))
    expect(row).to_contain_text(re.compile(rf"{version}\s*live"))
    expect(card.get_by_role("row", name=re.compile(rf"^{live}\b"))).to_contain_text(re.compile(rf"{live}\s*retired"))
    model = call(base, "GET", "/v1/admin/models/bidnet", token=token)
    assert model["canary"] is None and model["live"] == model["serving"] == version
    assert (model["last_canary"]["version"], model["last_canary"]["decision"]) == (version, "promoted")
    page.screenshot(path="/tmp/console-canary-promoted.png", full_page=True)
    card.screenshot(path="/tmp/console-canary-promoted-card.png")
