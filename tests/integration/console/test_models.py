"""The Models page in Chromium: an admin sees the bid model with no trained version yet and what to do about it,
trains one from logged shown ads and clicks, sees it live with its held-out metrics, the metrics chart and the
calibration curve, and rolls back to the configured model (the API agrees)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from bench.server import ServerProcess, free_port
from tests.integration.console.conftest import DEMO_ADMIN, DEMO_ENV
from tests.integration.console.helpers import admin_token, call

# A retrain as soon as 1,000 shown ads with 20 clicks are logged, counting every ad, and only when asked; no demo
# traffic, so the logged rows are exactly the simulated ones.
LEARNING = {"CONTRAIL__DEMO__TRAFFIC_PER_S": "0", "CONTRAIL__LEARNING__MIN_ROWS": "1000",
            "CONTRAIL__LEARNING__MIN_CLICKS": "20", "CONTRAIL__LEARNING__LABEL_DELAY_S": "0",
            "CONTRAIL__LEARNING__RETRAIN_INTERVAL_S": "0"}
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
    server = ServerProcess(data, True, **{**DEMO_ENV, "CONTRAIL__SMTP__PORT": str(free_port()), **LEARNING})
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
