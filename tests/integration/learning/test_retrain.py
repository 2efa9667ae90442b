"""The bid model's learning loop in the real app: won bids log the features they were scored on, a retrain fits
a candidate from the logged shown ads and clicks, the candidate goes live only when it beats the live model on
held-out rows, any kept version can be rolled back to, and the live version survives a restart."""

import io
import time

import numpy as np

from app.learning import bidmodel
from app.main import PLATFORM
from app.runtime.clock import SystemClock
from app.simulate import Simulator
from eval.ctr import World
from ml import features
from ml.training import metrics as quality
from tests.integration.bidding.helpers import _client

LEARNING = dict(learning__min_rows=1000, learning__min_clicks=20, learning__label_delay_s=0,
                learning__retrain_interval_s=0, learning__keep_files=2, ratelimit__ip_per_s=100_000,
                ratelimit__ip_burst=100_000, ratelimit__principal_per_s=100_000, ratelimit__principal_burst=100_000)
ROWS = 30_000  # simulated shown ads: about 300 clicks at the simulator's ~1% click rate


async def _admin(client):
    _, key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    return {"X-Api-Key": key}


async def _log_simulated(platform, seed, rows=ROWS):
    """Shown ads and their clicks as the win and click notices log them, for a seed's travellers and hidden truth
    (eval.ctr.World builds the rows exactly as the bidder does). Traffic through HTTP logs the same records (the
    first test shows it); at ~300 requests a second on loopback it would take minutes to log this many."""
    world = World(seed)
    rng = np.random.default_rng(seed)
    imps = world.impressions(rng, np.sort(rng.uniform(0, 3600, rows)))
    now = time.time()
    shown, clicks = [], []
    for n, (row, clicked, at) in enumerate(zip(imps["x"], imps["clicked"], imps["at"], strict=True)):
        bid_id = f"{n:012x}sim{seed}"
        columns, values = features.to_sparse(row)
        shown.append({"bid_id": bid_id, "campaign_id": "c", "at": now - 3600 + float(at), "i": columns, "v": values})
        if clicked:
            clicks.append({"bid_id": bid_id, "campaign_id": "c", "user_id": "u"})
    assert platform.event_log.log_events("Shown", shown) == len(shown)
    assert platform.event_log.log_events("Click", clicks) == len(clicks)
    await platform.event_log.flush()
    return imps


async def test_won_bids_log_the_features_they_were_scored_on(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, SystemClock(), **LEARNING)
    platform = client.app[PLATFORM]
    _, admin = await platform.api_keys.create("sim", "admin")
    sim = Simulator(7, f"http://127.0.0.1:{client.port}", admin, log=io.StringIO())
    scored: dict[str, np.ndarray] = {}
    score = platform.batcher.score

    async def keep_rows(user_row, cand, *args):  # what the scorer was given, by the bid it became
        settled = await score(user_row, cand, *args)
        scored[f"{len(scored)}"] = features.candidate_matrix(user_row, cand)
        return settled

    platform.bidder.batcher.score = keep_rows  # type: ignore[method-assign]
    summary = await sim.run(rate=100, seconds=1.5)
    assert summary.errors == 0 and summary.wins > 10
    await platform.event_log.flush()
    shown = await platform.event_log.recent_payloads("Shown", 100_000)
    assert len(shown) == summary.wins  # every won bid logged its row, once
    clicks = await platform.event_log.recent_payloads("Click", 100_000)
    clicked, unreadable = bidmodel.clicked_bids(clicks)
    logged = bidmodel.labelled_rows(shown, clicked, time.time() + 1)
    assert logged.clicks == summary.clicks and logged.unreadable == unreadable == 0
    # Read as the retrain reads them, by pages: the same rows in the same order.
    paged = bidmodel.joined([bidmodel.labelled_rows(page, clicked, time.time() + 1) async for page in
                             platform.event_log.payload_pages("Shown", 100_000, page=7)][::-1])
    assert np.array_equal(paged.x, logged.x) and np.array_equal(paged.y, logged.y)
    # Each logged row is one the scorer was given, bit for bit (the bid's own candidate row).
    candidates = np.concatenate(list(scored.values()))
    assert all(np.any(np.all(candidates == row, axis=1)) for row in logged.x)


async def test_a_retrain_goes_live_only_when_it_beats_the_live_model(aiohttp_client, tmp_path, monkeypatch):
    client = await _client(aiohttp_client, tmp_path, SystemClock(), **LEARNING)
    platform = client.app[PLATFORM]
    admin = await _admin(client)
    empty = await (await client.post("/v1/admin/models/bidnet/train", headers=admin)).json()
    assert empty["status"] == "skipped" and "learning.min_rows" in empty["reason"]

    imps = await _log_simulated(platform, seed=3)
    run = await (await client.post("/v1/admin/models/bidnet/train", headers=admin)).json()
    assert run["status"] == "promoted", run["reason"]
    assert run["version"] == "bidnet-1" and run["rows"] == ROWS and run["clicks"] == int(imps["clicked"].sum())
    assert run["candidate"]["auc"] > run["live"]["auc"] + 0.1  # the shipped model ranks at random
    assert run["candidate"]["log_loss"] < run["live"]["log_loss"]
    net = platform.model.current
    assert net.version == "bidnet-1"
    fresh = World(3).impressions(np.random.default_rng(99), np.linspace(3600, 7200, 20_000))
    assert quality.auc(quality.predict_ctr(net, fresh["x"]), fresh["p"] > np.median(fresh["p"])) > 0.7

    listing = await (await client.get("/v1/admin/models", headers=admin)).json()
    bid = next(m for m in listing["models"] if m["name"] == "bidnet")
    assert bid["live"] == bid["serving"] == "bidnet-1"
    assert [(v["version"], v["status"], v["source"]) for v in bid["versions"]] == [
        ("bidnet-1", "live", "trained"), ("default-v1", "retired", "config")]
    metrics = bid["versions"][0]["metrics"]
    assert metrics["holdout"]["auc"] == run["candidate"]["auc"] and metrics["compared_with"] == "default-v1"
    assert len(metrics["reliability"]) > 1 and bid["last_run"]["version"] == "bidnet-1"

    # A candidate worse than the live model is recorded, not swapped in: here one that ranks backwards.
    fit = bidmodel._fit

    def backwards(logged, start, config, version):
        result, live = fit(logged, start, config, version)
        w2, b2 = result.net.w2.copy(), result.net.b2.copy()
        w2[:, 1], b2[1] = -w2[:, 1], -b2[1]
        flipped = type(result.net)(result.net.version, result.net.w1, result.net.b1, w2, b2, result.net.theta)
        hold = result.split.holdout
        result.holdout = quality.evaluate(flipped, logged.x[hold], logged.y[hold])
        result.net = flipped
        return result, live

    monkeypatch.setattr(bidmodel, "_fit", backwards)
    rejected = await (await client.post("/v1/admin/models/bidnet/train", headers=admin)).json()
    assert rejected["status"] == "rejected" and "not better" in rejected["reason"]
    assert rejected["candidate"]["auc"] < rejected["live"]["auc"]
    assert platform.model.current.version == "bidnet-1"
    page = await (await client.get("/v1/admin/models/bidnet?limit=1", headers=admin)).json()
    assert [(v["version"], v["status"]) for v in page["versions"]] == [("bidnet-2", "rejected")]
    rest = await (await client.get(f"/v1/admin/models/bidnet?limit=5&after={page['next_cursor']}",
                                   headers=admin)).json()
    assert [v["version"] for v in rest["versions"]] == ["bidnet-1", "default-v1"] and rest["next_cursor"] is None


async def test_rollback_and_the_live_version_survive_a_restart(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, SystemClock(), **LEARNING)
    platform = client.app[PLATFORM]
    admin = await _admin(client)
    await _log_simulated(platform, seed=4, rows=10_000)
    assert (await (await client.post("/v1/admin/models/bidnet/train", headers=admin)).json())["status"] == "promoted"
    trained = platform.model.current

    back = await client.post("/v1/admin/models/bidnet/rollback", headers=admin)
    assert back.status == 200 and (await back.json())["version"] == "default-v1"
    assert platform.model.current.version == "default-v1"
    listing = await (await client.get("/v1/admin/models/bidnet", headers=admin)).json()
    assert [(v["version"], v["status"]) for v in listing["versions"]] == [("bidnet-1", "rolled_back"),
                                                                          ("default-v1", "live")]
    again = await client.post("/v1/admin/models/bidnet/rollback", json={"version": "bidnet-1"}, headers=admin)
    assert again.status == 200 and platform.model.current.version == "bidnet-1"
    assert np.array_equal(platform.model.current.w1, trained.w1)

    # Refusals say what was wrong and change nothing.
    for body, status, words in (({"version": "bidnet-9"}, 404, "no version"), ({"version": "bidnet-1"}, 409,
                                "already live"), ({"version": 3}, 400, "version"), ({"nope": 1}, 400, "nope")):
        resp = await client.post("/v1/admin/models/bidnet/rollback", json=body, headers=admin)
        assert resp.status == status and words in (await resp.json())["error"]["message"]
    assert (await client.post("/v1/admin/models/nosuch/train", headers=admin)).status == 404
    assert (await client.get("/v1/admin/models")).status == 401
    _, partner = await platform.api_keys.create("partner", "partner")
    assert (await client.post("/v1/admin/models/bidnet/train", headers={"X-Api-Key": partner})).status == 403
    assert platform.model.current.version == "bidnet-1"
    audit = [e.action for e in await platform.admin.audit_page(50, None)]
    assert audit.count("model.rollback") == 2 and "model.train" in audit

    # A restart serves the version that was live, from its kept file.
    await client.close()
    restarted = await _client(aiohttp_client, tmp_path, SystemClock(), campaigns=[], **LEARNING)
    served = restarted.app[PLATFORM].model.current
    assert served.version == "bidnet-1" and np.array_equal(served.w1, trained.w1)
