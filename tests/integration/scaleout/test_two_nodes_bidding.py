"""Two Contrail nodes bidding for the same campaigns, as real processes on one PostgreSQL and one Redis: the daily
budget holds with both bidding flat out and every notice landing on the node that did not bid, frequency caps count
both nodes' impressions, a win notice is accepted once whichever node hears it, and a Redis restart mid-load costs
bounded no-bids and 503s, never an acknowledged charge."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import aiohttp
import asyncpg
import pytest

from app import localservers
from bench.server import ServerProcess
from tests.integration.scaleout.test_two_nodes import admin_key, two_nodes

BUDGET = 400_000  # micros a day; bids reserve their CPM / 1000 (2,000-5,000 micros each)


def _nodes(tmp_path, dsn: str, redis_url: str, prefix: str, **env: str) -> tuple[ServerProcess, ServerProcess]:
    return two_nodes(tmp_path, dsn, CONTRAIL__REDIS__URL=redis_url, CONTRAIL__REDIS__PREFIX=prefix,
                     CONTRAIL__REDIS__SPEND_REFRESH_MS="100", CONTRAIL__BIDDING__PACING_SLACK="1.0", **env)


@pytest.fixture
def bidding_cluster(tmp_path, pg_server, redis_server, redis_prefix):
    """Two nodes (not started) on a new PostgreSQL database and the session's Redis."""
    dsn = pg_server.new_database()
    nodes = _nodes(tmp_path, dsn, redis_server.url, redis_prefix)
    yield dsn, nodes
    for node in nodes:
        node.stop()


async def _keys(session, node: ServerProcess) -> tuple[dict, dict, dict]:
    """Headers of two admins (one creates, the other approves: two keys made with the CLI, as a key made through the
    API acts for its maker) and of an exchange, made through the API of the started node."""
    maker, approver = admin_key(node), admin_key(node, "approver")
    node.start()
    async with session.post(f"{node.url}/v1/admin/api-keys", json={"name": "exchange", "role": "exchange"},
                            headers=maker) as resp:
        return maker, approver, {"X-Api-Key": (await resp.json())["key"]}


async def _live_campaign(session, url: str, maker: dict, approver: dict, **fields) -> None:
    campaign = {"id": "shared", "name": "Shared by two nodes", "advertiser_domain": "contrail.example",
                "bid_cap_micros": 5_000_000, "daily_budget_micros": BUDGET,
                "creatives": [{"id": "c1", "format": "banner", "markup": "<b>fly</b>", "w": 300, "h": 250}], **fields}
    async with session.post(f"{url}/v1/admin/campaigns", json=campaign, headers=maker) as resp:
        assert resp.status == 201, await resp.text()
    for step, who, body in (("submit", maker, {}), ("approve", approver, {}),
                            ("schedule", maker, {"starts_at": time.time() - 60})):
        async with session.post(f"{url}/v1/admin/campaigns/shared/{step}", json=body, headers=who) as resp:
            assert resp.status == 200, await resp.text()
    async with session.get(f"{url}/v1/admin/campaigns/shared", headers=maker) as resp:
        assert (await resp.json())["state"] == "live"


async def _bid(session, url: str, exchange: dict, user: str) -> tuple[int, dict | None]:
    body = {"id": f"r-{user}-{time.monotonic_ns()}", "imp": [{"id": "1", "bidfloor": 0.5,
            "banner": {"w": 300, "h": 250}}], "site": {"id": "s", "domain": "news.example"},
            "user": {"id": user}, "tmax": 500}
    async with session.post(f"{url}/v1/bid", json=body, headers=exchange) as resp:
        return resp.status, (await resp.json())["seatbid"][0]["bid"][0] if resp.status == 200 else None


async def _notice(session, url: str, kind: str, bid: dict) -> tuple[int, dict]:
    async with session.get(f"{url}/v1/notices/{kind}", params={"bid": bid["id"], "price": str(bid["price"])}) as resp:
        return resp.status, await resp.json()


async def _spend(dsn: str) -> tuple[int, int]:
    """The record's charges: (how many, micros spent today)."""
    conn = await asyncpg.connect(dsn)
    try:
        charges = await conn.fetchval("SELECT count(*) FROM bid_outcomes WHERE kind = 'charge'")
        spent = await conn.fetchval("SELECT coalesce(sum(spent_micros), 0) FROM campaign_spend")
    finally:
        await conn.close()
    return charges, spent


async def test_the_daily_budget_holds_with_both_nodes_bidding_flat_out(bidding_cluster):
    dsn, (a, b) = bidding_cluster
    users = itertools.count()
    async with aiohttp.ClientSession() as session:
        maker, approver, exchange = await _keys(session, a)
        await _live_campaign(session, a.url, maker, approver)
        b.start()  # loads the live campaign from the shared record
        outcomes: Counter = Counter()
        won: list[int] = []

        async def bidder(node: ServerProcess, other: ServerProcess, rounds: int) -> None:
            for _ in range(rounds):
                status, bid = await _bid(session, node.url, exchange, f"u{next(users)}")
                outcomes[status] += 1
                if bid is not None:  # it wins at its full price, and the other node hears the notices
                    first = await _notice(session, other.url, "win", bid)
                    again = await _notice(session, node.url, "billing", bid)
                    assert first[0] == again[0] == 200, (first, again)
                    assert first[1]["charged"] and not again[1]["charged"]
                    won.append(round(bid["price"] * 1_000_000) // 1000)  # the CPM's share of one impression
        await asyncio.gather(*(bidder(n, o, 60) for n, o in ((a, b), (b, a)) for _ in range(4)))
    charges, spent = await _spend(dsn)
    assert outcomes[204] > 0, outcomes  # the budget ran out and both nodes stopped bidding
    assert charges == len(won) and spent == sum(won)
    assert BUDGET - 5_000 < spent <= BUDGET, spent  # spent up to the budget, never past it


async def test_frequency_caps_count_both_nodes_impressions(bidding_cluster):
    dsn, (a, b) = bidding_cluster
    async with aiohttp.ClientSession() as session:
        maker, approver, exchange = await _keys(session, a)
        await _live_campaign(session, a.url, maker, approver, frequency_caps={"day": 2},
                             daily_budget_micros=10**9)
        b.start()
        for node, other in ((a, b), (b, a)):  # one impression through each node, each won on the other
            status, bid = await _bid(session, node.url, exchange, "traveller")
            assert status == 200
            assert (await _notice(session, other.url, "win", bid))[0] == 200
        for node in (a, b):
            assert (await _bid(session, node.url, exchange, "traveller"))[0] == 204
        assert (await _bid(session, b.url, exchange, "someone-else"))[0] == 200
        async with session.get(f"{a.url}/metrics") as resp:
            assert 'reason="frequency_capped"' in await resp.text()


async def test_a_redis_restart_mid_load_costs_bounded_no_bids_and_loses_no_acknowledged_charge(tmp_path, pg_server):
    if "redis-server" in localservers.missing():
        pytest.skip("Redis is not installed: apt install redis-server")
    redis = localservers.Redis(tmp_path / "redis").start()
    dsn = pg_server.new_database()
    a, b = _nodes(tmp_path, dsn, redis.url, "restart")
    try:
        users = itertools.count()
        acknowledged: list[str] = []
        statuses: Counter = Counter()
        refusals: list[str] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            maker, approver, exchange = await _keys(session, a)
            await _live_campaign(session, a.url, maker, approver, daily_budget_micros=10**9)
            b.start()
            stop = asyncio.Event()

            async def load(node: ServerProcess, other: ServerProcess) -> None:
                while not stop.is_set():
                    status, bid = await _bid(session, node.url, exchange, f"u{next(users)}")
                    statuses[status] += 1
                    if bid is not None:
                        status, body = await _notice(session, other.url, "win", bid)
                        statuses[f"win {status}"] += 1
                        if status == 200 and body["charged"]:
                            acknowledged.append(bid["id"])
                        elif status != 200:
                            refusals.append(body["error"]["message"])
            loads = [asyncio.create_task(load(n, o)) for n, o in ((a, b), (b, a)) for _ in range(3)]
            await asyncio.sleep(1.0)
            before = len(acknowledged)
            redis.stop(graceful=True)
            await asyncio.sleep(1.0)  # down: bids are no-bids, notices 503
            during = statuses.copy()
            redis.start()  # the same port and data: the nodes reconnect by themselves
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*loads)
            after = len(acknowledged)
            for node in (a, b):
                async with session.get(f"{node.url}/health/ready") as resp:
                    assert resp.status == 200 and (await resp.json())["checks"]["redis"] is True
        assert before > 20 and after > before + 20, (before, after, statuses)
        assert during[204] > 0, during
        assert all("Redis" in message for message in refusals), refusals[:3]
        conn = await asyncpg.connect(dsn)
        try:
            stored = {r["bid_id"] for r in await conn.fetch("SELECT bid_id FROM bid_outcomes WHERE kind = 'charge'")}
        finally:
            await conn.close()
        assert set(acknowledged) <= stored, "an acknowledged charge was lost"
        charges, spent = await _spend(dsn)
        assert charges == len(stored)
    finally:
        a.stop()
        b.stop()
        redis.stop()


async def test_an_exchange_spreading_requests_over_both_nodes_gets_its_rate_once(tmp_path, pg_server, redis_server,
                                                                                redis_prefix):
    rate, burst, seconds = 20, 5, 3.0
    a, b = _nodes(tmp_path, pg_server.new_database(), redis_server.url, redis_prefix,
                  CONTRAIL__BIDDING__EXCHANGE_PER_S=str(rate), CONTRAIL__BIDDING__EXCHANGE_BURST=str(burst))
    try:
        answered: Counter = Counter()
        async with aiohttp.ClientSession() as session:
            _, _, exchange = await _keys(session, a)
            b.start()
            deadline = time.monotonic() + seconds

            async def client(n: int) -> None:
                while time.monotonic() < deadline:
                    node = (a, b)[answered.total() % 2]
                    status, _ = await _bid(session, node.url, exchange, f"u{n}")
                    answered[(node.url, status)] += 1
            await asyncio.gather(*(client(n) for n in range(4)))
        allowed = sum(count for (_, status), count in answered.items() if status != 429)
        refused = sum(count for (_, status), count in answered.items() if status == 429)
        one_node = burst + rate * seconds  # what one node alone lets through
        assert refused > 0
        assert all(answered[(node.url, 204)] + answered[(node.url, 200)] > 5 for node in (a, b)), answered
        # Unshared, each node would let one_node through (130 here); shared, both together let through about that
        # much, plus the other node's second bucket and what each let through before hearing of the other.
        assert allowed < one_node * 1.5, (allowed, one_node, answered)
    finally:
        a.stop()
        b.stop()
