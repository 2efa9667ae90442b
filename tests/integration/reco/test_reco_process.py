"""kill -9 just after ingest acknowledged a purchase and a dismissal: after the restart the customer's lists still
leave the bought and the dismissed item out."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.server import ServerProcess
from tests.integration.reco.helpers import event

ITEMS = [f"dest-{n:02d}" for n in range(12)]


async def test_a_purchase_and_a_dismissal_acknowledged_just_before_a_kill_9_stay_out_of_the_lists(tmp_path):
    server = ServerProcess(tmp_path / "var")
    key = server.cli("create-api-key", "--name", "crm", "--role", "admin").stdout.strip().splitlines()[-1]
    headers = {"X-Api-Key": key}
    try:
        await asyncio.to_thread(server.start)
        async with aiohttp.ClientSession(headers=headers) as session:
            async def post(path: str, body) -> dict:
                async with session.post(f"{server.url}{path}", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                    return await resp.json()

            async def listed() -> list[str]:
                async with session.get(f"{server.url}/v1/recommendations/buyer", params={"n": "12"}) as resp:
                    assert resp.status == 200, await resp.text()
                    return [i["item_id"] for i in (await resp.json())["items"]]

            await post("/v1/reco/items", [{"item_id": i, "category": "destination"} for i in ITEMS])
            now = time.time()
            await post("/v1/channels/ingest", [event("buyer", "product_view", i, now - 60) for i in ITEMS[:4]])
            before = await listed()
            assert "dest-00" in before and "dest-01" in before
            # Other shoppers' views keep the learning queue busy, so the kill lands before it reaches anything
            # queued after them.
            for batch in range(8):
                await post("/v1/channels/ingest", [event(f"shopper-{batch}-{u}", "product_view", ITEMS[u % 12],
                                                         now - 30) for u in range(500)])
            answer = await post("/v1/channels/ingest", [event("buyer", "purchase", "dest-00", now - 1),
                                                        event("buyer", "dismiss", "dest-01", now - 1)])
            assert answer["accepted"] == 2
            server.proc.kill()
            server.proc.wait(10)

            await asyncio.to_thread(server.start)
            after = await listed()
            assert "dest-00" not in after and "dest-01" not in after, after
            async with session.get(f"{server.url}/v1/reco/users/buyer") as resp:
                activity = await resp.json()
            assert {"dest-00", "dest-01"} <= set(activity["bought_or_dismissed"]), activity
    finally:
        server.stop()
