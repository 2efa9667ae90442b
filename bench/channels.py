"""Channel benchmark: email through the durable outbox to the embedded SMTP sink."""

from __future__ import annotations

import asyncio
import time

from bench.server import ServerProcess

# The shipped per-customer cap (3 a day) stays: each email goes to a member of its own, and
# the ingest benchmark's triggers meet the cap as they would in production.
SINK_ENV = {"CONTRAIL__SMTP__EMBEDDED_SINK": "true", "CONTRAIL__SMTP__RATE_PER_S": "100000",
            "CONTRAIL__SMTP__POOL_SIZE": "32"}


async def _email_rate(url: str, admin_key: str, count: int) -> tuple[float, float]:
    """(activations queued per s, messages received by the sink per s), from the first request."""
    import aiohttp
    headers = {"X-Api-Key": admin_key}
    async with aiohttp.ClientSession() as session:
        async def member(n: int) -> None:
            async with session.put(f"{url}/v1/loyalty/members/bench-{n}", headers=headers,
                                   json={"email": f"bench-{n}@example.com"}) as resp:
                assert resp.status == 200
        await asyncio.gather(*(member(n) for n in range(count)))
        count_only = {"limit": "0"}
        async with session.get(f"{url}/v1/admin/mailbox", params=count_only, headers=headers) as resp:
            before = (await resp.json())["received"]
        started = time.perf_counter()
        sent = 0

        async def worker(offset: int) -> None:
            nonlocal sent
            n = offset
            while n < count:
                async with session.post(f"{url}/v1/channels/activate", headers=headers,
                                        json={"user_id": f"bench-{n}", "subject": "Your weekend in Lisbon",
                                              "text": "Fly from $49.",
                                              "html": '<p><a href="https://fly.contrail.example/lis">Fly</a></p>'}
                                        ) as resp:
                    assert resp.status == 201
                    sent += 1
                n += 32
        await asyncio.gather(*(worker(k) for k in range(32)))
        queued_s = time.perf_counter() - started
        received = 0
        while received < count and time.perf_counter() - started < 120:
            await asyncio.sleep(0.05)
            async with session.get(f"{url}/v1/admin/mailbox", params=count_only, headers=headers) as resp:
                received = (await resp.json())["received"] - before
        return count / queued_s, received / (time.perf_counter() - started)


def email_rate(server: ServerProcess, admin_key: str, count: int = 3000) -> tuple[float, float]:
    return asyncio.run(_email_rate(server.url, admin_key, count))


def ingest_scenario(admin_key: str, per_batch: int = 100):
    """Batches of app and web events from many users (no purchases: those are the earn benchmark); product views
    and cart adds name one of 500 items, so the recommendation features learn from them as they arrive."""
    import json
    import random

    from bench.load import Scenario
    rng = random.Random(5)
    types = ["page_view", "product_view", "search", "app_open", "cart_add"]
    bodies = []
    for _ in range(20):
        batch = []
        for _ in range(per_batch):
            kind = rng.choice(types)
            event = {"source": rng.choice(["web", "mobile_app"]), "type": kind,
                     "user_id": f"user-{rng.randrange(50_000)}", "session_id": f"s{rng.randrange(10**6)}",
                     "category": rng.choice(["beach", "city", "ski", "family"])}
            if kind in ("product_view", "cart_add"):
                event["product_id"] = f"item-{rng.randrange(500)}"
            batch.append(event)
        bodies.append(json.dumps(batch).encode())
    return Scenario(f"channels: ingest, {per_batch} events per batch", "/v1/channels/ingest", "POST", bodies,
                    {"X-Api-Key": admin_key, "Content-Type": "application/json"}, connections=16)
