"""Bad input never becomes a 500: mutated OpenRTB requests and random JSON against every write endpoint."""

import copy
import json
import random

from tests.integration.bidding.helpers import REQUESTS, _admin, _client, post_bid

ODD_VALUES = [None, True, -1, 0, 2**63, 1e308, -0.5, "", "x" * 300, [], {}, [None], {"a": [1, {"b": None}]},
              "${AUCTION_PRICE}", "\u0000", "💺"]


def _mutate(value, rng: random.Random):
    """Replace, drop or retype one randomly chosen node of a JSON document."""
    doc = copy.deepcopy(value)
    node, parents = doc, []
    for _ in range(rng.randint(1, 6)):
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
        elif isinstance(node, list) and node:
            key = rng.randrange(len(node))
        else:
            break
        parents.append((node, key))
        node = node[key]
    if not parents:
        return rng.choice(ODD_VALUES)
    parent, key = parents[-1]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[key]
    else:
        parent[key] = rng.choice(ODD_VALUES)
    return doc


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.choice(ODD_VALUES)
    if kind == 1:
        return rng.randint(-10, 10**6)
    if kind == 2:
        return rng.choice(["name", "role", "admin", "exchange", "banner", "video", "id", "1", ""])
    if kind == 3:
        return rng.random() * 100
    if kind == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["id", "name", "role", "email", "password", "status", "creatives", "w", "h", "format", "markup",
            "bid_cap_micros", "daily_budget_micros", "interests", "segments", "loyalty", "path", "events", "type",
            "user_id", "amount_cents", "channel", "transaction_id", "stars", "source", "entries", "identifier",
            "subject", "text", "event", "sg_event_id", "origin", "departure_date", "birthday"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


async def test_mutated_bid_requests_get_200_204_or_400(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock)
    rng = random.Random(2026)
    originals = [json.loads(p.read_bytes()) for p in REQUESTS]
    statuses = set()
    for _ in range(400):
        body = _mutate(rng.choice(originals), rng)
        resp = await post_bid(client, json.dumps(body))
        statuses.add(resp.status)
        assert resp.status in (200, 204, 400), (resp.status, body)
    assert {200, 400} <= statuses


async def test_random_json_never_breaks_a_write_endpoint(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock)
    headers = await _admin(client)
    paths = [("POST", "/v1/admin/api-keys"), ("POST", "/v1/admin/users"), ("POST", "/v1/admin/campaigns"),
             ("PATCH", "/v1/admin/campaigns/demo-lis-bcn"), ("POST", "/v1/admin/campaigns/demo-lis-bcn/creatives"),
             ("PUT", "/v1/profiles/fuzz"), ("POST", "/v1/admin/model/reload"), ("POST", "/v1/auth/token"),
             ("POST", "/v1/accounts"), ("POST", "/v1/loyalty/earn"), ("POST", "/v1/loyalty/redeem"),
             ("POST", "/v1/loyalty/reverse"), ("PUT", "/v1/loyalty/members/fuzz"), ("POST", "/v1/loyalty/birthday"),
             ("POST", "/v1/loyalty/reward-signal"), ("POST", "/v1/admin/loyalty/promotions"),
             ("POST", "/v1/channels/activate"), ("POST", "/v1/channels/ingest"), ("POST", "/v1/suppressions"),
             ("DELETE", "/v1/suppressions"), ("POST", "/v1/webhooks/sendgrid"), ("POST", "/v1/webhooks/payments"),
             ("POST", "/v1/offers/search")]
    rng = random.Random(7)
    for _ in range(600):
        method, path = rng.choice(paths)
        raw = json.dumps(_random_json(rng)) if rng.random() < 0.9 else "{" + "x" * rng.randint(0, 20)
        resp = await client.request(method, path, data=raw, headers={**headers, "Content-Type": "application/json"})
        assert resp.status < 500, (method, path, raw, await resp.text())
        if resp.status >= 400:
            assert "error" in await resp.json()
    assert (await client.get("/health/ready")).status == 200


async def test_mutated_retail_bodies_get_clear_4xx_never_5xx(aiohttp_client, tmp_path, clock):
    from app.main import PLATFORM
    from tests.integration.retail.helpers import booked, search_body, seed_catalog
    client = await _client(aiohttp_client, tmp_path, clock)
    admin = await _admin(client)
    flight = await seed_catalog(client.app[PLATFORM], clock)
    order = await booked(client, admin, clock)
    valid = [
        ("POST", "/v1/offers/search", search_body(clock, passengers=2, segment="corporate")),
        ("POST", "/v1/admin/flights", {"id": "CT555-f", "airline": "CT", "number": "CT555", "origin": "LIS",
                                       "destination": "OPO", "departure_at": clock.now() + 86_400,
                                       "arrival_at": clock.now() + 90_000,
                                       "cabins": {"economy": {"capacity": 10, "base_fare_cents": 3000}}}),
        ("PATCH", f"/v1/admin/flights/{flight.id}", {"status": "scheduled",
                                                     "cabins": {"economy": {"capacity": 150, "base_fare_cents": 9}}}),
        ("POST", "/v1/admin/products", {"id": "p-f", "kind": "Meal", "name": "Snack", "price_cents": 500,
                                        "capacity_per_flight": 5}),
        ("POST", f"/v1/orders/{order['id']}/pay", {"card": {"number": "4000000000000002", "exp_month": 1,
                                                            "exp_year": 2099, "cvc": "123"}}),
    ]
    rng = random.Random(11)
    statuses = set()
    for _ in range(300):
        method, path, body = rng.choice(valid)
        resp = await client.request(method, path, data=json.dumps(_mutate(body, rng)),
                                    headers={**admin, "Content-Type": "application/json"})
        statuses.add(resp.status)
        assert resp.status < 500, (method, path, await resp.text())
        if resp.status >= 400:
            assert (await resp.json())["error"]["message"]
    assert 400 in statuses and statuses & {200, 201}
    assert (await client.get("/health/ready")).status == 200


# The shapes of impressions Contrail cannot serve or may not bid on, as replacements of one node.
UNSERVABLE = [
    ("imp.0.banner", {}), ("imp.0.banner", {"format": []}), ("imp.0.banner", {"w": -300, "h": 250}),
    ("imp.0.banner", {"format": [{"w": 0, "h": 250}]}), ("imp.0.video", {"mimes": ["video/mp4"], "w": 0, "h": -1}),
    ("imp.0.native", {"ver": "1.2"}), ("imp.0.pmp", {"private_auction": 1, "deals": [{"id": ""}]}),
    ("imp.0.pmp", {"private_auction": 1, "deals": []}), ("regs", {"gdpr": 2}), ("regs", {"ext": {"gdpr": 7}}),
    ("device", {"w": -1, "h": 800}),
]


def _with(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, dict) and last in ("banner", "video", "native"):
        for media in ("banner", "video", "audio", "native"):  # the impression offers only this medium
            node.pop(media, None)
    node[last] = value
    return doc


async def test_impressions_that_cannot_be_served_are_never_bid_on(aiohttp_client, tmp_path, clock):
    """Every conformance request, with each unservable shape put in it (and mixed with random mutations):
    a 204 or a 400, never a bid."""
    client = await _client(aiohttp_client, tmp_path, clock)
    rng = random.Random(26)
    originals = [json.loads(p.read_bytes()) for p in REQUESTS]
    cases = 0
    for original in originals:
        for path, value in UNSERVABLE:
            base = _mutate(original, rng) if rng.random() < 0.5 else original
            try:
                body = _with(base, path, value)
            except (TypeError, KeyError, IndexError, AttributeError, ValueError):
                continue  # the mutation removed or retyped the node this shape goes in
            cases += 1
            resp = await post_bid(client, json.dumps(body))
            assert resp.status in (204, 400), (path, value, resp.status, await resp.text())
    assert cases >= len(originals) * len(UNSERVABLE) // 2
