"""Shared set-up for the retail tests: a real app with a small catalog and signed-in shoppers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import msgspec

from app.demo import DEMO_PRODUCTS
from app.main import PLATFORM
from state.catalog import Cabin, Flight, Product
from tests.conftest import bearer

DAY = 86_400
PAID_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
PENDING_CARD = "4000000000000259"


def departure_date(clock, days: int = 3) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(clock.now() + days * DAY))


async def seed_catalog(platform, clock, *, economy: int = 150, days: int = 3) -> Flight:
    """Products of every kind and one LIS-BCN flight `days` from now at noon UTC."""
    for pid, kind, name, price, capacity in DEMO_PRODUCTS:
        await platform.catalog.put_product("test", Product(pid, kind, name, price, capacity_per_flight=capacity),
                                           audit=False)
    noon = (int(clock.now() // DAY) + days) * DAY + 12 * 3600
    flight = Flight(id="CT101-test", airline="CT", number="CT101", origin="LIS", destination="BCN",
                    departure_at=noon, arrival_at=noon + 7_500,
                    cabins={"economy": Cabin(economy, 10_000), "premium": Cabin(12, 25_000)})
    await platform.catalog.put_flights("test", [flight], audit=False)
    return flight


def search_body(clock, **overrides) -> dict:
    body = {"origin": "LIS", "destination": "BCN", "departure_date": departure_date(clock), "passengers": 1,
            "cabin": "economy", "segment": "economy"}
    body.update(overrides)
    return body


async def search(client, headers, clock, **overrides) -> list[dict]:
    resp = await client.post("/v1/offers/search", json=search_body(clock, **overrides), headers=headers)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["offers"]


async def ranking_of(client, offers: list[dict]) -> list[dict]:
    """How each of these offers was ranked (probability, margin, score, rank), from their OfferGenerated
    events: shoppers are not shown it."""
    log = client.app[PLATFORM].event_log
    await log.flush()
    events = [msgspec.json.decode(e.payload) for e in await log.query("OfferGenerated", None, 0, 10_000)]
    by_id = {e["offer_id"]: e for e in events}
    return [by_id[o["id"]] for o in offers]


async def customer(client, name: str) -> dict[str, str]:
    return await bearer(client, f"{name}@example.com", "correct horse battery", "customer")


async def accept(client, headers, offer_id: str, key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return await client.post(f"/v1/offers/{offer_id}/accept", headers={**headers, **extra})


async def pay(client, headers, order_id: str, card: str = PAID_CARD, key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return await client.post(f"/v1/orders/{order_id}/pay", headers={**headers, **extra},
                             json={"card": {"number": card, "exp_month": 12, "exp_year": 2099, "cvc": "123"}})


async def booked(client, headers, clock, **search_overrides) -> dict:
    """A PROPOSED order for the flight-only offer of a fresh search."""
    offers = await search(client, headers, clock, **search_overrides)
    offer = next(o for o in offers if o["bundle"] == "flight_only")
    resp = await accept(client, headers, offer["id"])
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def seats_left(client, clock, cabin="economy") -> int:
    resp = await client.get("/v1/flights", params={"origin": "LIS", "destination": "BCN",
                                                   "date": departure_date(clock)})
    assert resp.status == 200
    return (await resp.json())["items"][0]["seats_left"][cabin]


def _signed(body: dict, secret: str) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    return raw, {"X-Contrail-Signature": "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest(),
                 "Content-Type": "application/json"}


async def every_order(session, base_url: str, admin: dict[str, str]) -> list[dict]:
    """Every order of a running server, through GET /v1/orders page by page (an aiohttp session)."""
    orders: list[dict] = []
    after = None
    while True:
        params = {"limit": "1000", **({"after": after} if after else {})}
        async with session.get(f"{base_url}/v1/orders", params=params, headers=admin) as resp:
            page = await resp.json()
        orders += page["items"]
        after = page["next_cursor"]
        if after is None:
            return orders
