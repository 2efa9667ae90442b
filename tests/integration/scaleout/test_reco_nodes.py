"""Recommendations on two nodes: each node's features are in its own memory, built from the feedback it records and
from what the other nodes tell it they recorded (a change notice carries the events whole). Two nodes that heard the
same feedback, each half of it first-hand, recommend the same lists."""

from __future__ import annotations

import random

import pytest

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.reco import SqliteRecoStore
from app.config import RecoConfig
from app.reco.service import Feedback, RecoService
from app.runtime.clock import SystemClock
from app.runtime.metrics import Metrics
from state.reco import RecoItem

STRATEGIES = ("personalized", "cf", "trending", "frequently_bought_together")


class Wire:
    """What NATS does between the nodes: a notice one node sends is applied by the other."""

    def __init__(self) -> None:
        self.to: RecoService | None = None
        self.pending: list[tuple[str, list[str]]] = []

    def changed(self, kind: str, ids) -> None:
        self.pending.append((kind, list(ids)))

    async def deliver(self) -> None:
        assert self.to is not None
        while self.pending:
            kind, ids = self.pending.pop(0)
            assert kind in ("feedback", "reco_item")
            await (self.to.apply_remote(ids) if kind == "feedback" else self.to.apply_items(ids))


async def _publish(event: object) -> None:
    pass


@pytest.fixture
async def nodes(tmp_path):
    db = Database(tmp_path / "records.db", migrations.RECORDS)
    await db.open()
    wires = [Wire(), Wire()]
    config = RecoConfig(max_users=3)  # small: users are forgotten and restored from the store
    services = [RecoService(config, SqliteRecoStore(db), SystemClock(), Metrics(), _publish, wire)
                for wire in wires]
    wires[0].to, wires[1].to = services[1], services[0]
    items = [RecoItem(f"i{n}", category="dest" if n < 10 else "extra") for n in range(20)]
    for service in services:
        await service.put_items(items)
    yield services, wires
    await db.close()


async def test_two_nodes_that_each_heard_half_the_feedback_recommend_alike(nodes):
    (a, b), wires = nodes
    rng = random.Random(3)
    at = 1_800_000_000.0
    kinds = ("product_view", "click", "cart_add", "purchase", "dismiss")
    for _ in range(300):
        at += rng.uniform(1, 60)
        event = Feedback(f"u{rng.randrange(8)}", f"i{rng.randrange(20)}", rng.choice(kinds), at)
        await (a if rng.random() < 0.5 else b).record([event])
        for wire in wires:
            await wire.deliver()
    for user in ("u0", "u3", "u7"):
        for strategy in STRATEGIES:
            on_a = [i["item_id"] for i in (await a.recommend(user, strategy, 8))["items"]]
            on_b = [i["item_id"] for i in (await b.recommend(user, strategy, 8))["items"]]
            assert on_a == on_b, (user, strategy)
    assert a.features.model().coview.nnz == b.features.model().coview.nnz > 0


async def test_items_stored_or_hidden_on_one_node_are_listed_alike_on_the_other(nodes):
    (a, b), wires = nodes
    at = 1_800_000_000.0
    for n, item in enumerate(("i0", "i1", "i2", "i3")):
        await a.record([Feedback("u1", item, "product_view", at + n)])
    await a.put_items([RecoItem("new-1", category="lounge"), RecoItem("new-2", category="lounge")])
    await a.record([Feedback("u2", "new-1", "product_view", at + 10), Feedback("u2", "new-2", "click", at + 11)])
    for wire in wires:
        await wire.deliver()
    lounge = [i["item_id"] for i in (await b.recommend("u1", "trending", 8, categories=["lounge"]))["items"]]
    assert sorted(lounge) == ["new-1", "new-2"]  # B knows their category
    before = [i["item_id"] for i in (await b.recommend("u1", "trending", 20))["items"]]
    assert "new-1" in before
    await a.put_items([RecoItem("new-1", category="lounge", hidden=True)])
    await wires[0].deliver()
    for service in (a, b):
        for strategy in STRATEGIES:
            assert "new-1" not in [i["item_id"] for i in (await service.recommend("u1", strategy, 20))["items"]]
