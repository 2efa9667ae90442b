"""A start restores the features' checkpoint and replays only the interactions stored after it: the features and
the lists are those of a replay of the whole log. A checkpoint covers exactly what it says it does."""

import asyncio
import logging

import numpy as np

from adapters.sqlite.reco import SqliteRecoStore
from app.main import PLATFORM, create_app
from app.reco.service import Feedback
from state.reco import Interaction
from tests.conftest import make_config
from tests.integration.reco.helpers import event, ingest, recommend, seed_items, staff

KINDS = (("product_view", 0.55), ("click", 0.15), ("cart_add", 0.1), ("purchase", 0.1), ("dismiss", 0.1))
STRATEGIES = ("personalized", "cf", "trending", "frequently_bought_together", "new_arrivals")
DAY = 86_400.0


def settings(tmp_path, **extra):
    """Weights that are squares, so every co-view and bought-together count (a sum of sqrt(w_a * w_b)) is a whole
    number: exact in float32 whenever the counts are merged into the matrix (a checkpoint merges them when it is
    taken, a replay once at the end; other weights round alike to within one float32 step). A day's half-life
    and a two-day trending window over ten days of events: decay and the window's expiry both count."""
    extra.setdefault("reco__checkpoint_interval_s", 0)
    return make_config(tmp_path, reco__weight_view=1, reco__weight_click=4,
                       reco__weight_wishlist=4, reco__weight_cart=9, reco__weight_purchase=16,
                       reco__weight_dismiss=-4, reco__popularity_half_life_s=DAY, reco__trending_window_s=2 * DAY,
                       reco__coview_ttl_s=DAY, reco__recent_ttl_s=3 * DAY, **extra)


def history(start: float, end: float, n: int, seed: int, items: list[str]) -> list[dict]:
    """n events of 30 users, in time order: each user mostly within one of three tastes (co-views that repeat),
    some purchases (bought together) and dismissals."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(start, end, n))
    kinds, p = [k for k, _ in KINDS], [q for _, q in KINDS]
    events = []
    for t in times:
        u = int(rng.integers(30))
        size = len(items) // 3
        taste = items[(u % 3) * size:(u % 3 + 1) * size]
        item = str(rng.choice(taste)) if rng.random() < 0.8 else str(rng.choice(items))
        events.append(event(f"u{u}", str(rng.choice(kinds, p=p)), item, float(t)))
    return events


def state_of(reco) -> dict:
    """Everything the features hold that is built from the log, as plain values."""
    f = reco.features
    m = f.model()
    return {"items": list(f.items.ids), "now": f.now, "sequence": f.sequence, "trending_window": list(f._trending),
            "users": [(u, s.item.tolist(), s.at.tolist(), s.weight.tolist(), s.purchase.tolist(), s.seen.tolist(),
                       s.final.tolist()) for u, s in f.users.items()],
            "arrays": {k: getattr(m, k).copy() for k in ("popularity", "decayed_popularity", "trending", "last_seen",
                                                         "created_at")},
            "coview": m.coview.toarray(), "fbt": m.bought_together.toarray()}


def assert_same_features(a: dict, b: dict) -> None:
    for key in ("items", "now", "sequence", "trending_window", "users"):
        assert a[key] == b[key], key
    for key, value in a["arrays"].items():
        np.testing.assert_allclose(value, b["arrays"][key], rtol=1e-12, err_msg=key)
    np.testing.assert_array_equal(a["coview"], b["coview"])
    np.testing.assert_array_equal(a["fbt"], b["fbt"])


async def lists(client, headers) -> dict:
    return {(u, s): await recommend(client, headers, u, strategy=s, n=8)
            for u in ("u0", "u1", "u5", "u13", "u29", "nobody") for s in STRATEGIES}


def count_replayed(monkeypatch) -> list[int]:
    """The interactions each start replays (the pages it reads after the checkpoint, or from the start)."""
    replayed = [0]
    original = SqliteRecoStore.interactions_after

    async def counted(self, after_id, limit):
        last, page = await original(self, after_id, limit)
        replayed[0] += len(page)
        return last, page
    monkeypatch.setattr(SqliteRecoStore, "interactions_after", counted)
    return replayed


async def test_a_start_from_the_checkpoint_and_the_tail_equals_a_replay_of_the_whole_log(
        aiohttp_client, tmp_path, clock, monkeypatch):
    config = settings(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    more = [{"item_id": f"i{k}", "category": "ancillary" if k % 2 else "destination"} for k in range(14)]
    assert (await client.post("/v1/reco/items", json=more, headers=headers)).status == 200
    p = client.app[PLATFORM]
    items = list(p.reco.features.items.ids)
    now = clock.now()
    first = history(now - 10 * DAY, now - 4 * DAY, 2_000, 1, items)
    for lo in range(0, len(first), 500):
        await ingest(client, headers, first[lo:lo + 500])
        p.reco.features.model()  # lists asked live merge the co-view counts now and then
    assert await p.reco.checkpoint() == "stored"
    assert await p.reco.checkpoint() == "unchanged"
    covered = (await p.reco_store.latest_checkpoint())[0]
    # An item registered after the checkpoint, and more events, some of them naming it.
    assert (await client.post("/v1/reco/items", json=[{"item_id": "late", "category": "ancillary"}],
                              headers=headers)).status == 200
    second = history(now - 4 * DAY, now - 60, 1_500, 2, [*items[:23], "late"])
    for lo in range(0, len(second), 500):
        await ingest(client, headers, second[lo:lo + 500])
    stored = len(await p.reco_store.interactions())
    assert stored == 3_500 and (await p.reco_store.interactions_since(covered))[0] == 1_500
    await client.close()

    replayed = count_replayed(monkeypatch)
    restored = await aiohttp_client(create_app(config, clock=clock))
    assert replayed[0] == stored - covered  # the tail only
    from_checkpoint = state_of(restored.app[PLATFORM].reco)
    assert from_checkpoint["sequence"] == stored
    assert from_checkpoint["items"][-1] == "late"
    headers = await staff(restored)
    restored_lists = await lists(restored, headers)
    await restored.close()

    async def none(self):
        return None
    monkeypatch.setattr(SqliteRecoStore, "latest_checkpoint", none)
    replayed[0] = 0
    replay = await aiohttp_client(create_app(config, clock=clock))
    assert replayed[0] == stored  # the whole log
    assert_same_features(from_checkpoint, state_of(replay.app[PLATFORM].reco))
    headers = await staff(replay)
    replay_lists = await lists(replay, headers)
    assert replay_lists == restored_lists
    assert any(r["items"] for r in replay_lists.values())
    assert "popular" in {a["model"] for a in replay_lists.values()}


async def test_a_checkpoint_that_cannot_be_read_is_left_for_the_whole_log(aiohttp_client, tmp_path, clock,
                                                                           monkeypatch, caplog):
    config = settings(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    p = client.app[PLATFORM]
    items = list(p.reco.features.items.ids)
    now = clock.now()
    await ingest(client, headers, history(now - 3 * DAY, now - 2 * DAY, 400, 3, items))
    assert await p.reco.checkpoint() == "stored"
    covered, taken_at, body = await p.reco_store.latest_checkpoint()
    await ingest(client, headers, history(now - 2 * DAY, now - 60, 300, 4, items))
    before = state_of(p.reco)
    before_lists = await lists(client, headers)
    await client.close()

    replayed = count_replayed(monkeypatch)
    # Truncated, not a checkpoint at all, one made under other settings: each start replays the whole log.
    for n, broken in enumerate((body[:len(body) // 2], b"not a checkpoint")):
        again = await aiohttp_client(create_app(config, clock=clock))
        await again.app[PLATFORM].reco_store.save_checkpoint(covered, taken_at, broken)
        await again.close()
        replayed[0] = 0
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="contrail.reco"):
            again = await aiohttp_client(create_app(config, clock=clock))
        assert replayed[0] == before["sequence"], n
        assert "checkpoint not restored" in caplog.text
        assert_same_features(before, state_of(again.app[PLATFORM].reco))
        assert await lists(again, await staff(again)) == before_lists
        await again.close()
    other = settings(tmp_path, reco__coview_window=3)
    again = await aiohttp_client(create_app(config, clock=clock))
    await again.app[PLATFORM].reco_store.save_checkpoint(covered, taken_at, body)
    await again.close()
    replayed[0] = 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="contrail.reco"):
        again = await aiohttp_client(create_app(other, clock=clock))
    assert replayed[0] == before["sequence"]
    assert any("other settings" in getattr(r, "error", "") for r in caplog.records)


async def test_a_checkpoint_covers_a_record_stored_before_it_and_none_after(aiohttp_client, tmp_path, clock,
                                                                             monkeypatch):
    """A record between its write and its apply holds the checkpoint back; one that comes meanwhile waits for it."""
    config = settings(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    p = client.app[PLATFORM]
    now = clock.now()
    await ingest(client, headers, history(now - DAY, now - 600, 200, 5, list(p.reco.features.items.ids)))
    store = p.reco_store
    written, release = asyncio.Event(), asyncio.Event()
    original = store.add_interactions

    async def slow(rows):
        await original(rows)
        written.set()
        await release.wait()
    monkeypatch.setattr(store, "add_interactions", slow)
    recording = asyncio.create_task(p.reco.record([Feedback("u1", "dest-BCN", "cart_add", now - 300)]))
    await written.wait()  # stored, not applied yet
    checkpointing = asyncio.create_task(p.reco.checkpoint())
    await asyncio.sleep(0.05)
    assert not checkpointing.done()
    monkeypatch.setattr(store, "add_interactions", original)
    later = asyncio.create_task(p.reco.record([Feedback("u2", "dest-MAD", "click", now - 200)]))
    await asyncio.sleep(0.01)
    release.set()
    assert await checkpointing == "stored"
    assert await recording == 1 and await later == 1
    covered = (await store.latest_checkpoint())[0]
    assert (await store.interactions_since(covered))[0] == 1  # the first record's row, not the later one's
    assert (await store.interactions_since(covered - 1))[0] == 2
    live = state_of(p.reco)
    await client.close()

    replayed = count_replayed(monkeypatch)
    again = await aiohttp_client(create_app(config, clock=clock))
    assert replayed[0] == 1
    assert_same_features(live, state_of(again.app[PLATFORM].reco))


async def test_rows_another_writer_stored_stop_the_checkpoints(aiohttp_client, tmp_path, clock, monkeypatch):
    """Interactions this node did not apply (another node's, without the change feed) are never claimed."""
    config = settings(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    p = client.app[PLATFORM]
    now = clock.now()
    await ingest(client, headers, [event("a", "product_view", "dest-BCN", now - 100)])
    assert await p.reco.checkpoint() == "stored"
    covered = (await p.reco_store.latest_checkpoint())[0]
    await p.reco_store.add_interactions([Interaction("b", "dest-LHR", "click", 3.0, now - 50)])
    await ingest(client, headers, [event("a", "product_view", "dest-MAD", now - 10)])
    assert await p.reco.checkpoint() == "skipped"
    assert await p.reco.checkpoint() == "skipped"
    assert (await p.reco_store.latest_checkpoint())[0] == covered
    text = await (await client.get("/metrics")).text()
    assert 'contrail_reco_checkpoints_total{outcome="skipped"} 2.0' in text
    assert 'contrail_reco_checkpoints_total{outcome="stored"} 1.0' in text
    assert "contrail_reco_checkpoint_bytes " in text
    await client.close()

    replayed = count_replayed(monkeypatch)
    again = await aiohttp_client(create_app(config, clock=clock))
    assert replayed[0] == 2 and again.app[PLATFORM].reco.features.sequence == 3
    assert "b" in again.app[PLATFORM].reco.features.users


async def test_the_periodic_checkpoint_is_a_supervised_task_unless_disabled(aiohttp_client, tmp_path, clock):
    on = await aiohttp_client(create_app(make_config(tmp_path / "on"), clock=clock))
    assert "reco_checkpoint" in on.app[PLATFORM].supervisor.states
    off = await aiohttp_client(create_app(make_config(tmp_path / "off", reco__checkpoint_interval_s=0), clock=clock))
    assert "reco_checkpoint" not in off.app[PLATFORM].supervisor.states


async def test_a_clean_shutdown_saves_the_features_and_the_next_start_replays_nothing(aiohttp_client, tmp_path,
                                                                                      clock, monkeypatch):
    config = settings(tmp_path, reco__checkpoint_interval_s=3_600)  # no periodic one comes within the test
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    p = client.app[PLATFORM]
    now = clock.now()
    await ingest(client, headers, history(now - DAY, now - 60, 300, 9, list(p.reco.features.items.ids)))
    live = state_of(p.reco)
    await client.close()

    replayed = count_replayed(monkeypatch)
    again = await aiohttp_client(create_app(config, clock=clock))
    assert replayed[0] == 0
    assert_same_features(live, state_of(again.app[PLATFORM].reco))


async def test_a_user_forgotten_before_the_checkpoint_or_during_the_replay_comes_back_as_live(
        aiohttp_client, tmp_path, clock):
    """A start restores a user the memory does not hold as `record` does, as they stood before the event it replays:
    what they bought or dismissed stays out of their lists and their co-views pair as they did live, whether they
    were left out of the checkpoint or forgotten by the LRU while the log replays."""
    config = settings(tmp_path, reco__max_users=20, reco__explore_items=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    reco = client.app[PLATFORM].reco
    now = clock.now()
    await ingest(client, headers, [event("a", "purchase", "lounge-pass", now - 300),
                                   event("a", "dismiss", "dest-LHR", now - 299),
                                   event("a", "product_view", "dest-CDG", now - 298),
                                   event("b", "dismiss", "dest-MAD", now - 297)])
    await ingest(client, headers, [event(f"o{k}", "product_view", "dest-BCN", now - 290 + k) for k in range(30)])
    assert "a" not in reco.features.users and "b" not in reco.features.users  # forgotten
    assert await reco.checkpoint() == "stored"   # taken while they are not held: left out of it
    await ingest(client, headers, [event("a", "product_view", "dest-MAD", now - 100),
                                   event("b", "product_view", "dest-CDG", now - 99)])
    await ingest(client, headers, [event(f"p{k}", "product_view", "dest-BCN", now - 90 + k) for k in range(30)])
    await ingest(client, headers, [event("b", "click", "dest-LHR", now - 50)])  # b forgotten again, then back
    live = {u: await recommend(client, headers, u, n=20) for u in ("a", "b")}
    live_features = state_of(reco)
    assert not {"lounge-pass", "dest-LHR"} & {i["item_id"] for i in live["a"]["items"]}
    assert "dest-MAD" not in {i["item_id"] for i in live["b"]["items"]}
    await client.close()   # no checkpoint at shutdown (reco.checkpoint_interval_s = 0): the tail is replayed

    for from_checkpoint in (True, False):
        again = await aiohttp_client(create_app(config, clock=clock))
        headers = await staff(again)
        restarted = again.app[PLATFORM].reco
        assert restarted._checkpointed >= 0 if from_checkpoint else restarted._checkpointed < 0
        assert np.array_equal(state_of(restarted)["coview"], live_features["coview"])
        for u in ("a", "b"):
            assert await recommend(again, headers, u, n=20) == live[u], (from_checkpoint, u)
        if from_checkpoint:   # next, the whole log: the LRU forgets them during the replay
            await again.app[PLATFORM].records_db.write([("DELETE FROM reco_checkpoint", ())])
        await again.close()
