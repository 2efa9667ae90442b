"""PolicyService without a server: the real SQLite store on tmp_path, a stand-in decision service (an external
system) and a manual clock and timer. Each signal id teaches once, even when copies race; a failed commit changes
nothing in memory; remembered ids are forgotten after reward_memory_days; the breaker lets one half-open trial
through; the fallback reasons are classified as the REST tests cannot easily provoke."""

from __future__ import annotations

import asyncio
import sqlite3

import msgspec
import numpy as np
import pytest

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.policies import SqlitePolicyStore
from app.campaigns.policies import PolicyService, _failure_reason, bucket_of
from app.config import CampaignsConfig
from app.errors import Conflict, NotFound
from app.loyalty.events import RewardSignalled
from app.runtime.bus import Bus
from app.runtime.clock import ManualClock
from app.runtime.metrics import Metrics
from state.campaigns import Campaign, Creative

DAY = 86_400


class Campaigns:
    """What PolicyService reads of CampaignService: get(), read(), exists() and list()."""

    def __init__(self, *campaigns: Campaign) -> None:
        self.by_id = {c.id: c for c in campaigns}

    def get(self, campaign_id: str) -> Campaign:
        if campaign_id not in self.by_id:
            raise NotFound(f"no campaign {campaign_id}")
        return self.by_id[campaign_id]

    async def read(self, campaign_id: str) -> Campaign:
        return self.get(campaign_id)

    def exists(self, campaign_id: str) -> bool:
        return campaign_id in self.by_id

    def list(self) -> list[Campaign]:
        return list(self.by_id.values())


class Remote:
    """A stand-in decision service: answers `action` after `hold` is set (when given)."""

    def __init__(self) -> None:
        self.action: str | None = "c2"
        self.error: Exception | None = None
        self.hold: asyncio.Event | None = None
        self.asked = 0
        self.rewards: list[tuple[str, str, float]] = []

    async def get_recommendation(self, user_id, context, arms):
        self.asked += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error
        return self.action

    async def send_reward(self, user_id, action, reward):
        self.rewards.append((user_id, action, reward))

    async def sync_catalog(self, items):
        pass

    async def close(self):
        pass


class Timer:
    def __init__(self) -> None:
        self.now = 0.0
        self.step = 0.0  # added on every reading: how long each call seems to take

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def campaign(state: str = "live") -> Campaign:
    return Campaign("spring", "Spring", "contrail.example", 1_000_000, 10_000_000, state=state,  # type: ignore[arg-type]
                    creatives=[Creative(c, "banner", "<b/>", 300, 250) for c in ("c1", "c2", "c3")])


@pytest.fixture
async def db(tmp_path):
    database = Database(tmp_path / "records.db", migrations.RECORDS, synchronous="OFF")
    await database.open()
    yield database
    await database.close()


def service(db, clock, remote=None, timer=None, state="live", **config):
    return PolicyService(Campaigns(campaign(state)), SqlitePolicyStore(db), CampaignsConfig(**config), clock,  # type: ignore[arg-type]
                         Metrics(), Bus(), remote, rng=np.random.default_rng(7), timer=timer or Timer())


def signal(signal_id: str, arm: str = "c2", reward: float = 1.0, **kw) -> RewardSignalled:
    fields = {"signal_id": signal_id, "user_id": "u1", "offer_id": "off", "signal_type": "clicked",
              "reward": reward, "tier": None, "campaign_id": "spring", "arm": arm, "context": {}, "at": 0.0}
    fields.update(kw)
    return RewardSignalled(**fields)


async def pulls(policies: PolicyService, arm: str = "c2") -> int:
    return next(a.pulls for a in (await policies.view("spring")).posterior if a.arm == arm)


def test_buckets_and_failure_reasons():
    assert bucket_of([], {"tier": "Gold"}) == ""
    assert bucket_of(["tier", "device"], {"device": "mobile", "tier": "Gold"}) == "tier=Gold&device=mobile"
    assert bucket_of(["tier"], {}) == "tier="

    class Failed(Exception):
        def __init__(self, message, status):
            super().__init__(message)
            self.message, self.status = message, status

    assert _failure_reason(Failed("recommended 'x', which is not one of the arms", 200)) == "bad_answer"
    assert _failure_reason(Failed("gave up after 1 attempt; last: POST /v1/recommendations did not answer "
                                  "within 0.25 s", None)) == "timeout"
    assert _failure_reason(Failed("POST /v1/recommendations answered 500: down", 500)) == "error"
    assert _failure_reason(ConnectionResetError("reset")) == "error"


async def test_each_signal_id_teaches_once_even_when_copies_race(db):
    clock = ManualClock()
    policies = service(db, clock)
    await policies.configure("admin", "spring", "thompson", "creatives", [])
    outcomes = await asyncio.gather(*(policies.learn(signal("s1")) for _ in range(5)))
    assert sorted(o or "" for o in outcomes) == ["learned", "repeat", "repeat", "repeat", "repeat"]
    assert await pulls(policies) == 1
    assert await policies.learn(signal("s2", "nope")) == "unknown_arm"
    assert await policies.learn(signal("s3", campaign_id="other")) == "no_policy"
    assert await policies.learn(signal(None)) is None  # type: ignore[arg-type]  # no id: nothing to learn once

    restarted = service(db, clock)
    await restarted.load()
    assert await pulls(restarted) == 1
    assert await restarted.learn(signal("s1")) == "repeat"


async def test_signal_ids_are_forgotten_after_the_reward_memory(db):
    clock = ManualClock()
    policies = service(db, clock, reward_memory_days=2)
    await policies.configure("admin", "spring", "thompson", "creatives", [])
    assert await policies.learn(signal("old")) == "learned"
    clock.advance(3 * DAY)
    assert await policies.purge_signals() == 1
    assert await policies.learn(signal("old")) == "learned"  # forgotten: it teaches again
    assert await pulls(policies) == 2


async def test_a_failed_commit_changes_nothing_in_memory_and_remembers_no_signal_id(db):
    clock = ManualClock()
    policies = service(db, clock)
    await policies.configure("admin", "spring", "thompson", "creatives", ["tier"])
    assert await policies.learn(signal("s1", tier="Gold")) == "learned"
    before = msgspec.json.encode(await policies.view("spring"))
    fault = "CREATE TRIGGER fault BEFORE UPDATE ON campaign_policies BEGIN SELECT RAISE(ABORT, 'disk fault'); END"
    await db.write([(fault, ())])  # the policy's state cannot be written: the whole reward is rolled back
    with pytest.raises(sqlite3.Error):
        await policies.learn(signal("s2", tier="Gold"))
    assert msgspec.json.encode(await policies.view("spring")) == before
    await db.write([("DROP TRIGGER fault", ())])
    assert await policies.learn(signal("s2", tier="Gold")) == "learned"  # its id was not kept either
    assert await pulls(policies) == 2


async def test_the_breaker_lets_one_half_open_trial_through_and_slow_answers_count_as_failures(db):
    clock, timer, remote = ManualClock(), Timer(), Remote()
    policies = service(db, clock, remote, timer, breaker_failures=2, breaker_slow_ms=100, breaker_open_s=10,
                       breaker_successes=1)
    await policies.configure("admin", "spring", "thompson", "creatives", [])
    assert (await policies.decide("spring", "u1", {})).source == "remote"
    timer.step = 0.2  # each reading 200 ms after the last: every call takes 200 ms, over breaker_slow_ms
    for _ in range(2):
        made = await policies.decide("spring", "u1", {})
        assert (made.source, made.fallback_reason) == ("fallback", "slow")
    assert (await policies.decide("spring", "u1", {})).fallback_reason == "breaker_open"
    timer.step = 0.0
    clock.advance(10)
    remote.hold = asyncio.Event()
    trial = asyncio.create_task(policies.decide("spring", "u1", {}))
    await asyncio.sleep(0)
    other = await policies.decide("spring", "u1", {})  # while the trial is out, the rest fall back
    assert other.fallback_reason == "breaker_open" and remote.asked == 4
    remote.hold.set()
    assert (await trial).source == "remote"
    remote.hold, remote.action = None, None  # no opinion: the local policy decides, and it is no failure
    made = await policies.decide("spring", "u1", {})
    assert made.source == "local" and made.fallback_reason is None and policies.breaker.state == 0


async def test_rewards_are_forwarded_and_only_live_campaigns_decide(db):
    clock, remote = ManualClock(), Remote()
    policies = service(db, clock, remote)
    await policies.configure("admin", "spring", "uniform", "creatives", [])
    await policies.learn(signal("s1", "c3", 2.0))
    await policies.idle()
    assert remote.rewards == [("u1", "c3", 2.0)]
    paused = service(db, clock, remote, state="paused")
    await paused.load()
    with pytest.raises(Conflict) as refused:
        await paused.decide("spring", "u1", {})
    assert refused.value.details == {"state": "paused"}


async def test_a_policy_leaves_memory_once_its_campaign_is_archived_on_another_node(db):
    # This node hears another's archiving as a stored change (the campaign store lets the campaign go), not as
    # CampaignChanged: the minute's pass lets the policy go too, and its state stays in the store.
    policies = service(db, ManualClock())
    await policies.configure("admin", "spring", "thompson", "creatives", [])
    assert await policies.learn(signal("s1")) == "learned"
    assert policies.forget_archived() == 0 and len(policies) == 1
    archived = policies._campaigns.by_id.pop("spring")  # type: ignore[attr-defined]  # the store let it go
    assert policies.forget_archived() == 1 and len(policies) == 0
    policies._campaigns.by_id["spring"] = msgspec.structs.replace(archived, state="archived")  # type: ignore[attr-defined]
    assert await pulls(policies) == 1  # read back from the store when asked for


async def test_a_reward_for_a_bucket_past_the_limit_counts_once_in_the_shared_one(db):
    """Past max_buckets a new context's rewards are learned in the shared bucket "": once, not twice (its own
    update and the pooled copy every bucket's reward also makes there)."""
    policies = service(db, ManualClock())
    await policies.configure("admin", "spring", "thompson", "creatives", ["tier"])
    for i in range(70):  # 63 tiers of their own beside "", then 7 that have to share it
        assert await policies.learn(signal(f"s{i}", tier=f"t{i}")) == "learned"
    policy = policies._held["spring"].policy
    assert len(policy.buckets) == policy.max_buckets == 64
    shared = {row["arm"]: row["pulls"] for row in policy.posterior("")}
    assert shared["c2"] == 70


class Wire:
    """What NATS does between nodes: the notices one node sends are applied by the other, when delivered."""

    def __init__(self) -> None:
        self.to: PolicyService | None = None
        self.pending: list[list[str]] = []

    def changed(self, kind: str, ids) -> None:
        assert kind == "policy"
        self.pending.append(list(ids))

    async def deliver(self) -> None:
        assert self.to is not None
        while self.pending:
            await self.to.refresh(self.pending.pop(0))


def node(db, clock, wire: Wire) -> PolicyService:
    return PolicyService(Campaigns(campaign()), SqlitePolicyStore(db), CampaignsConfig(), clock,  # type: ignore[arg-type]
                         Metrics(), Bus(), None, rng=np.random.default_rng(7), timer=Timer(), changes=wire)


async def test_two_nodes_learning_from_one_store_keep_every_reward_and_hear_the_policy(db):
    """Node B started before A configured the policy; rewards alternate between the nodes, notices undelivered, so
    each writes from a state the other moved on from. Nothing is lost, in memory or in the store."""
    clock = ManualClock()
    wires = [Wire(), Wire()]
    a, b = node(db, clock, wires[0]), node(db, clock, wires[1])
    wires[0].to, wires[1].to = b, a
    await a.load()
    await b.load()
    await a.configure("admin", "spring", "thompson", "creatives", [])
    assert (await b.decide("spring", "u9", {})).arm in ("c1", "c2", "c3")  # B reads what A configured
    outcomes = [await (a if n % 2 == 0 else b).learn(signal(f"s{n}", "c1" if n % 2 == 0 else "c2"))
                for n in range(10)]
    assert outcomes == ["learned"] * 10
    assert await b.learn(signal("s0", "c1")) == "repeat"  # learned on A: B knows it from the store
    for policies in (a, b):
        await wires[0].deliver()
        await wires[1].deliver()
        assert (await pulls(policies, "c1"), await pulls(policies, "c2")) == (5, 5)
    restarted = node(db, clock, Wire())
    await restarted.load()
    assert (await pulls(restarted, "c1"), await pulls(restarted, "c2")) == (5, 5)


async def test_rewards_racing_on_two_nodes_all_land(db):
    clock = ManualClock()
    a, b = node(db, clock, Wire()), node(db, clock, Wire())
    await a.configure("admin", "spring", "thompson", "creatives", [])
    await b.load()
    outcomes = await asyncio.gather(*((a if n % 2 else b).learn(signal(f"r{n}")) for n in range(20)))
    assert outcomes.count("learned") == 20
    fresh = node(db, clock, Wire())
    await fresh.load()
    assert await pulls(fresh) == 20
