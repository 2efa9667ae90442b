"""kill -9 in the middle of searches, accepts and payments: after a restart every acknowledged offer,
order and payment is there, the seats held equal the seats of live orders exactly, and nothing is
sold twice; also with retail.max_offers_in_memory far below the offers made."""

import asyncio
import time

import aiohttp
import pytest

from bench.server import ServerProcess
from tests.integration.retail.helpers import PAID_CARD, every_order

CAPACITY = 60
LIVE = {"PROPOSED", "PAYMENT_PENDING", "PAID", "FULFILLED", "ARCHIVED"}


@pytest.fixture(params=[{}, {"CONTRAIL__RETAIL__MAX_OFFERS_IN_MEMORY": "20"}], ids=["offers-held", "offers-evicted"])
def server(tmp_path, request):
    """The second: far more offers than memory holds, so most accepts read their offer back from SQLite."""
    srv = ServerProcess(tmp_path / "var", **request.param)
    yield srv
    srv.stop()


async def _catalog(session, url, admin) -> str:
    now = time.time()
    departs = (int(now // 86_400) + 3) * 86_400 + 43_200
    flight = {"id": "CT900-kill", "airline": "CT", "number": "CT900", "origin": "LIS", "destination": "OPO",
              "departure_at": departs, "arrival_at": departs + 3300,
              "cabins": {"economy": {"capacity": CAPACITY, "base_fare_cents": 4000}}}
    async with session.post(f"{url}/v1/admin/flights", json=flight, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
    return time.strftime("%Y-%m-%d", time.gmtime(departs))


async def _shopper(session, url, date, acked_orders, acked_payments, acked_offers, stop_at):
    async with session.post(f"{url}/v1/auth/guest") as resp:
        headers = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        try:
            search = {"origin": "LIS", "destination": "OPO", "departure_date": date, "passengers": 1 + n % 2}
            async with session.post(f"{url}/v1/offers/search", json=search, headers=headers) as resp:
                offers = (await resp.json())["offers"]
            if not offers:
                return  # sold out
            acked_offers.update(o["id"] for o in offers)
            async with session.post(f"{url}/v1/offers/{offers[0]['id']}/accept", headers=headers) as resp:
                if resp.status != 201:
                    continue
                order = await resp.json()
                acked_orders[order["id"]] = order["passengers"]
            if n % 2:
                card = {"card": {"number": PAID_CARD, "exp_month": 12, "exp_year": 2099, "cvc": "123"}}
                async with session.post(f"{url}/v1/orders/{order['id']}/pay", json=card, headers=headers) as resp:
                    if resp.status == 200:
                        acked_payments.add(order["id"])
        except (TimeoutError, aiohttp.ClientError, KeyError):
            return  # the server went away: whatever was in flight was never acknowledged


async def test_kill_9_during_accepts_and_payments(server):
    key = server.cli("create-api-key", "--name", "ops", "--role", "admin").stdout.strip().splitlines()[-1]
    admin = {"X-Api-Key": key}
    server.start()
    acked_orders: dict[str, int] = {}
    acked_payments: set[str] = set()
    acked_offers: set[str] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        date = await _catalog(session, server.url, admin)
        stop_at = time.monotonic() + 15
        shoppers = [asyncio.create_task(_shopper(session, server.url, date, acked_orders, acked_payments, acked_offers,
                                                     stop_at))
                    for _ in range(24)]
        await server.kill_9_mid_load(shoppers, lambda: len(acked_orders) >= 25, stop_at)
    assert len(acked_orders) >= 25

    server.start()
    async with aiohttp.ClientSession() as session:
        orders = await every_order(session, server.url, admin)
        async with session.get(f"{server.url}/v1/flights",
                               params={"origin": "LIS", "destination": "OPO", "date": date}) as resp:
            seats_left = (await resp.json())["items"][0]["seats_left"]["economy"]

        async def offer_state(offer_id: str) -> str:
            async with session.get(f"{server.url}/v1/offers/{offer_id}", headers=admin) as resp:
                return (await resp.json())["state"] if resp.status == 200 else f"HTTP {resp.status}"
        offer_states = await asyncio.gather(*(offer_state(o) for o in sorted(acked_offers)))
    assert acked_offers and set(offer_states) <= {"ACTIVE", "ACCEPTED"}, "an acknowledged offer was lost"
    by_id = {o["id"]: o for o in orders}
    assert set(acked_orders) <= set(by_id), "an acknowledged order was lost"
    assert all(by_id[o]["state"] == "FULFILLED" for o in acked_payments), "an acknowledged payment was lost"
    held = sum(o["passengers"] for o in orders if o["state"] in LIVE)
    assert seats_left == CAPACITY - held  # held seats are exactly the live orders' seats
    assert 0 <= seats_left and held <= CAPACITY  # never oversold
    offer_ids = [o["offer_id"] for o in orders]
    assert len(offer_ids) == len(set(offer_ids))  # no offer sold twice
