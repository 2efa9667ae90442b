"""Retail benchmarks: offer search against the trivial endpoint, durable accepts, payments."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

from bench.load import Result, Scenario, run, run_with_baseline
from bench.server import ServerProcess

CARD = {"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}}


def prepare(server: ServerProcess) -> None:
    """The demo carrier's month of flights (before the server starts)."""
    result = server.cli("seed-demo")
    assert result.returncode == 0, result.stderr


def _guest(server: ServerProcess) -> dict[str, str]:
    req = urllib.request.Request(f"{server.url}/v1/auth/guest", data=b"", method="POST")
    token = json.loads(urllib.request.urlopen(req).read())["access_token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def search_bodies() -> list[bytes]:
    """One-passenger searches over every demo route, both ways, for the next four weeks."""
    from app.demo import DEMO_ROUTES
    today = int(time.time() // 86_400)
    bodies = []
    for day in range(2, 30):
        date = time.strftime("%Y-%m-%d", time.gmtime((today + day) * 86_400))
        for a, b, *_ in DEMO_ROUTES:
            for origin, destination in ((a, b), (b, a)):
                bodies.append(json.dumps({"origin": origin, "destination": destination, "departure_date": date,
                                          "passengers": 1, "segment": "leisure"}).encode())
    return bodies


async def _collect_offers(url: str, headers: dict[str, str], bodies: list[bytes], wanted: int) -> list[str]:
    import aiohttp
    offers: list[str] = []

    async def worker(offset: int) -> None:
        i = offset
        async with aiohttp.ClientSession() as session:
            while len(offers) < wanted:
                async with session.post(f"{url}/v1/offers/search", data=bodies[i % len(bodies)],
                                        headers=headers) as resp:
                    offers.extend(o["id"] for o in (await resp.json())["offers"])
                i += 16
    await asyncio.gather(*(worker(n) for n in range(16)))
    return offers


async def _proposed_orders(url: str, headers: dict[str, str]) -> list[str]:
    import aiohttp
    ids, after = [], None
    async with aiohttp.ClientSession() as session:
        while True:
            params = {"limit": "1000", **({"after": after} if after else {})}
            async with session.get(f"{url}/v1/orders", params=params, headers=headers) as resp:
                page = await resp.json()
            ids += [o["id"] for o in page["items"] if o["state"] == "PROPOSED"]
            after = page["next_cursor"]
            if after is None:
                return ids


def _held(scenario: Scenario, full: Result) -> Scenario:
    """The same scenario held at half the throughput it reached: latency under a sustainable load."""
    scenario.name, scenario.rate, scenario.connections = f"{scenario.name} at half rate", full.rps / 2, 16
    return scenario


def run_all(server: ServerProcess, seconds: float) -> list[Result]:
    headers = _guest(server)
    bodies = search_bodies()

    def searching() -> Scenario:
        return Scenario("retail: POST /v1/offers/search", "/v1/offers/search", "POST", bodies, headers)
    results = [run_with_baseline(server.url, searching(), seconds)]
    results.append(run(server.url, _held(searching(), results[-1]), seconds))

    # Two thirds for accepting flat out, which must not run out of offers (a repeat would be a 409): room
    # for 10,000 accepts/s.
    offers = asyncio.run(_collect_offers(server.url, headers, bodies, int(15_000 * seconds)))
    half = len(offers) * 2 // 3

    def accepting(ids: list[str]) -> Scenario:
        return Scenario("retail: accept (durable order)", "", "POST", [], headers,
                        paths=[f"/v1/offers/{o}/accept" for o in ids])
    results.append(run(server.url, accepting(offers[:half]), seconds))
    # The target as written: 2,000 orders/s from 64 concurrent clients, p95 under 20 ms.
    held = accepting(offers[half:])
    held.name, held.rate = "retail: accept held at 2,000/s, 64 clients", 2000
    results.append(run(server.url, held, seconds))

    orders = asyncio.run(_proposed_orders(server.url, headers))
    results.append(run(server.url, Scenario("retail: pay (charge + fulfil)", "", "POST", [json.dumps(CARD).encode()],
                                            headers, paths=[f"/v1/orders/{o}/pay" for o in orders]), seconds))
    return results
