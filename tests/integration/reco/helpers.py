"""Shared calls for the recommendation tests: a staff key, items, events through ingest, lists."""

from __future__ import annotations

from app.main import PLATFORM

DESTINATIONS = ["BCN", "LHR", "CDG", "FNC", "AMS", "MAD"]
ANCILLARIES = ["seat-standard", "bag-23kg", "meal-hot", "lounge-pass"]


async def staff(client) -> dict[str, str]:
    _, key = await client.app[PLATFORM].api_keys.create("crm", "partner")
    return {"X-Api-Key": key}


async def seed_items(client, headers) -> None:
    items = [{"item_id": f"dest-{d}", "category": "destination", "tags": ["europe"]} for d in DESTINATIONS]
    items += [{"item_id": p, "category": "ancillary"} for p in ANCILLARIES]
    resp = await client.post("/v1/reco/items", json=items, headers=headers)
    assert resp.status == 200, await resp.text()


def event(user: str, kind: str, item: str, at: float | None = None, **extra) -> dict:
    e = {"source": "web", "type": kind, "user_id": user, "product_id": item, **extra}
    if kind == "purchase":
        e.setdefault("amount_cents", 1_000)
        e.setdefault("transaction_id", f"t-{user}-{item}-{at}")
    if at is not None:
        e["at"] = at
    return e


async def ingest(client, headers, events: list[dict]) -> dict:
    resp = await client.post("/v1/channels/ingest", json=events, headers=headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["rejected"] == [], body
    await client.app[PLATFORM].bus.idle()  # the features learn from ingest's events in the background
    return body


async def recommend(client, headers, user: str, **params) -> dict:
    resp = await client.get(f"/v1/recommendations/{user}", params={k: str(v) for k, v in params.items()},
                            headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def ids(answer: dict) -> list[str]:
    return [i["item_id"] for i in answer["items"]]


async def browse_history(client, headers, clock) -> None:
    """Shoppers who view BCN also view MAD (and a few LHR); one who looks at lounges also looks at bags."""
    now = clock.now()
    events = []
    for u in range(6):
        events += [event(f"h{u}", "product_view", "dest-BCN", now - 600 + u),
                   event(f"h{u}", "product_view", "dest-MAD", now - 500 + u)]
    for u in range(2):
        events += [event(f"l{u}", "product_view", "dest-LHR", now - 400 + u),
                   event(f"l{u}", "click", "dest-CDG", now - 300 + u)]
    events += [event("x", "cart_add", "lounge-pass", now - 200), event("x", "cart_add", "bag-23kg", now - 100)]
    await ingest(client, headers, events)


async def evaluation_gauges(client) -> dict[tuple[str, str], float]:
    """contrail_reco_evaluation's series from /metrics, by (metric, model)."""
    found = {}
    for line in (await (await client.get("/metrics")).text()).splitlines():
        if line.startswith("contrail_reco_evaluation{"):
            labels, value = line[len("contrail_reco_evaluation{"):].split("} ")
            named = dict(part.split("=") for part in labels.split(","))
            found[(named["metric"].strip('"'), named["model"].strip('"'))] = float(value)
    return found
