"""kill -9 in the middle of order changes (confirms owing money, some approved at once, some left pending at the
gateway): after a restart every order holds exactly one itinerary (its pending change's additions beside it, until
the payment settles), the seats held equal the seats of live orders, and every acknowledged change is there."""

import asyncio
import time

import aiohttp
import pytest

from bench.server import ServerProcess
from tests.integration.retail.helpers import PAID_CARD, PENDING_CARD, every_order

LIVE = {"PROPOSED", "PAYMENT_PENDING", "PAID", "FULFILLED", "ARCHIVED"}
CAPACITY = {"CT910-kill": 60, "CT912-kill": 12}


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "var")
    yield srv
    srv.stop()


def _card(number: str) -> dict:
    return {"card": {"number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"}}


async def _catalog(session, url, admin) -> tuple[str, str]:
    today = int(time.time() // 86_400) * 86_400
    dates = []
    for flight_id, days in (("CT910-kill", 3), ("CT912-kill", 4)):
        departs = today + days * 86_400 + 43_200
        flight = {"id": flight_id, "airline": "CT", "number": flight_id[:5], "origin": "LIS", "destination": "OPO",
                  "departure_at": departs, "arrival_at": departs + 3300,
                  "cabins": {"economy": {"capacity": CAPACITY[flight_id], "base_fare_cents": 4000}}}
        async with session.post(f"{url}/v1/admin/flights", json=flight, headers=admin) as resp:
            assert resp.status == 201, await resp.text()
        dates.append(time.strftime("%Y-%m-%d", time.gmtime(departs)))
    return dates[0], dates[1]


async def _shopper(session, url, dates, n, acked: dict[str, str], stop_at: float) -> None:
    async with session.post(f"{url}/v1/auth/guest") as resp:
        headers = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
    while time.monotonic() < stop_at:
        try:
            search = {"origin": "LIS", "destination": "OPO", "departure_date": dates[0], "passengers": 1}
            async with session.post(f"{url}/v1/offers/search", json=search, headers=headers) as resp:
                offers = [o for o in (await resp.json())["offers"] if o["bundle"] == "flight_only"]
            if not offers:
                return
            async with session.post(f"{url}/v1/offers/{offers[0]['id']}/accept", headers=headers) as resp:
                if resp.status != 201:
                    continue
                order = await resp.json()
            async with session.post(f"{url}/v1/orders/{order['id']}/pay", json=_card(PAID_CARD),
                                    headers=headers) as resp:
                if resp.status != 200:
                    continue
            change = {"slices": [{"remove": [order["flight_id"]],
                                  "add": {"origin": "LIS", "destination": "OPO", "departure_date": dates[1]}}]}
            async with session.post(f"{url}/v1/orders/{order['id']}/change-requests", json=change,
                                    headers=headers) as resp:
                if resp.status != 201:
                    continue  # the later flight is full
                offer = (await resp.json())["change_offers"][0]
            n += 1
            card = PENDING_CARD if n % 3 == 0 else PAID_CARD
            async with session.post(f"{url}/v1/orders/{order['id']}/change-offers/{offer['id']}/confirm",
                                    json=_card(card), headers=headers) as resp:
                if resp.status in (200, 202):
                    acked[order["id"]] = "changed" if resp.status == 200 else "pending"
        except (TimeoutError, aiohttp.ClientError, KeyError):
            return  # the server went away: whatever was in flight was never acknowledged


async def test_kill_9_during_changes(server):
    key = server.cli("create-api-key", "--name", "ops", "--role", "admin").stdout.strip().splitlines()[-1]
    admin = {"X-Api-Key": key}
    server.start()
    acked: dict[str, str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        dates = await _catalog(session, server.url, admin)
        stop_at = time.monotonic() + 15
        shoppers = [asyncio.create_task(_shopper(session, server.url, dates, n, acked, stop_at)) for n in range(16)]
        await server.kill_9_mid_load(shoppers, lambda: len(acked) >= 8, stop_at)
    assert len(acked) >= 8

    server.start()
    async with aiohttp.ClientSession() as session:
        orders = await every_order(session, server.url, admin)
        seats_left = {}
        for date in dates:
            async with session.get(f"{server.url}/v1/flights",
                                   params={"origin": "LIS", "destination": "OPO", "date": date}) as resp:
                for f in (await resp.json())["items"]:
                    seats_left[f["id"]] = f["seats_left"]["economy"]
    by_id = {o["id"]: o for o in orders}
    held = dict.fromkeys(CAPACITY, 0)
    for o in orders:
        if o["state"] in LIVE:
            assert sum(i["kind"] == "Flight" for i in o["items"]) == 1  # exactly one itinerary
            extra = o["pending_change"]["added"] if o["pending_change"] else []
            for item in [*o["items"], *extra]:
                if item["kind"] == "Flight":
                    held[item["product_id"]] += item["quantity"]
    assert seats_left == {f: CAPACITY[f] - held[f] for f in CAPACITY}  # held seats are exactly live orders' seats
    assert all(0 <= n for n in seats_left.values())  # never oversold
    for order_id, what in acked.items():
        order = by_id[order_id]
        if what == "changed":
            assert order["flight_id"] == "CT912-kill" and order["version"] == 2, order
        else:  # pending at the gateway: the old itinerary, and the new seat held beside it
            assert order["state"] == "PAYMENT_PENDING" and order["flight_id"] == "CT910-kill"
            assert order["pending_change"]["added"][0]["product_id"] == "CT912-kill"
