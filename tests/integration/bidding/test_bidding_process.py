"""kill -9 while bidding with billing notices, with the request-shape cache and the bid ledger evicting (the
smallest budgets they take): after a restart no campaign has spent more than its daily budget, every charge a
notice acknowledged is counted, and a notice sent again is not charged again."""

import asyncio
import random
import re
import sqlite3
import time

import aiohttp
import msgspec
import pytest

from bench.bidding_scale import _campaigns, _request
from bench.server import ServerProcess
from state.campaigns import _encode

BUDGET = 30_000  # micros a day: 6 to 30 impressions at the campaigns' bid caps (1 to 5 USD CPM)
CAMPAIGNS = 150


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "var", CONTRAIL__BIDDING__SHAPE_CACHE_MB="1",
                        CONTRAIL__BIDDING__MAX_LIVE_BIDS="1000",
                        CONTRAIL__BIDDING__PACING_SLACK="1")  # the whole day's budget open at any hour
    srv.data_dir.mkdir(parents=True)
    path = re.search(r"database at (\S+)", srv.cli("migrate").stdout).group(1)  # type: ignore[union-attr]
    campaigns = [msgspec.structs.replace(c, daily_budget_micros=BUDGET)
                 for c in _campaigns(CAMPAIGNS, random.Random(9))]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO campaigns(id, body, updated_at) VALUES (?,?,?)",
                       [(c.id, _encode(c).decode(), time.time()) for c in campaigns])
    yield srv
    srv.stop()


def _key(server: ServerProcess, role: str) -> str:
    return server.cli("create-api-key", "--name", role, "--role", role).stdout.strip().splitlines()[-1]


async def _bidder(session, url, key, bodies, acked, sent_notices, stop_at):
    """Bid, and send each bid's billing notice at half its price; `acked`: the notices answered 'charged'."""
    while time.monotonic() < stop_at and bodies:
        body = bodies.pop()
        try:
            async with session.post(f"{url}/v1/bid", data=body, headers={"X-Api-Key": key}) as resp:
                if resp.status != 200:
                    continue
                bid = (await resp.json())["seatbid"][0]["bid"][0]
            billing = bid["burl"].replace("${AUCTION_PRICE}", f"{bid['price'] / 2:.6f}")
            sent_notices.append(billing)
            async with session.get(billing) as resp:
                if resp.status == 200 and (await resp.json())["charged"]:
                    acked[bid["id"]] = (bid["adid"], billing)
        except (TimeoutError, aiohttp.ClientError):
            return  # the server went away: what was in flight was never acknowledged


async def _spend(url: str, admin: str) -> dict[str, tuple[int, int]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/admin/spend",
                                                               headers={"X-Api-Key": admin}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    rows = body["items"] if isinstance(body, dict) else body
    return {r["campaign_id"]: (r["spent_micros"], r["daily_budget_micros"]) for r in rows}


async def _load(server, exchange, bodies, acked, sent, seconds, until=None):
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        stop_at = time.monotonic() + seconds
        tasks = [asyncio.create_task(_bidder(session, server.url, exchange, bodies, acked, sent, stop_at))
                 for _ in range(8)]
        if until is None:
            await asyncio.gather(*tasks)
        else:
            await server.kill_9_mid_load(tasks, lambda: len(acked) >= until, stop_at)


async def test_kill_9_while_charging_with_caches_evicting_keeps_budgets_and_charges_once(server):
    admin, exchange = _key(server, "admin"), _key(server, "exchange")
    rng = random.Random(3)
    bodies = [_request(i, rng, new_sizes=True) for i in range(40_000)]  # a new request shape in every bid
    day = time.strftime("%Y-%m-%d", time.gmtime())
    server.start(timeout=60)
    acked: dict[str, tuple[str, str]] = {}
    sent: list[str] = []
    await _load(server, exchange, bodies, acked, sent, 30.0, until=400)
    assert len(acked) >= 400
    server.start(timeout=60)
    before = dict(acked)
    # Every acknowledged charge is there after the restart (none lost: losing one would let a campaign overspend).
    spend = await _spend(server.url, admin)
    charged: dict[str, int] = {}
    for campaign_id, billing in before.values():
        price = float(re.search(r"price=([0-9.]+)", billing).group(1))  # type: ignore[union-attr]
        charged[campaign_id] = charged.get(campaign_id, 0) + round(price * 1_000_000) // 1000  # CPM to one imp
    for campaign_id, micros in charged.items():
        assert spend[campaign_id][0] >= micros, campaign_id
    # A notice sent again, acknowledged before the kill or not, charges nothing more.
    async with aiohttp.ClientSession() as session:
        for billing in sent:
            async with session.get(billing) as resp:
                assert resp.status in (200, 404), await resp.text()  # 404: an unknown or expired bid
                assert resp.status == 404 or not (await resp.json())["charged"]
    assert await _spend(server.url, admin) == spend
    # Bidding goes on until the budgets are spent, and none is passed: load in rounds until a third of the
    # campaigns have spent theirs (a machine busy with other work gets there later, not never).
    deadline = time.monotonic() + 60
    while True:
        await _load(server, exchange, bodies, acked, [], 1.0)  # short rounds: stop soon after a third are spent
        if time.strftime("%Y-%m-%d", time.gmtime()) != day:
            pytest.skip("the UTC day turned during the test: the budgets started again")
        spend = await _spend(server.url, admin)
        assert all(spent <= budget == BUDGET for spent, budget in spend.values()), spend
        spent_out = sum(spent == BUDGET or BUDGET - spent < 5_000 for spent, _ in spend.values())
        if spent_out > CAMPAIGNS // 3 or time.monotonic() > deadline or not bodies:
            break
    assert spent_out > CAMPAIGNS // 3, (spent_out, len(bodies))
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as resp:
        metrics = await resp.text()
    evicted = re.search(r'contrail_cache_evictions_total\{cache="bid_shapes"\} ([0-9.e+]+)', metrics)
    assert evicted and float(evicted.group(1)) > 0, "the shape cache never evicted: the test did not test eviction"
