"""Readiness reports a supervised task in backoff, through the real app."""

import asyncio

from app.main import PLATFORM, create_app
from tests.conftest import make_config


async def test_readiness_reports_a_task_in_backoff(aiohttp_client, tmp_path):
    app = create_app(make_config(tmp_path, tasks__restart_backoff_s="30"))
    platform = app[PLATFORM]

    async def broken() -> None:
        raise RuntimeError("cannot reach anything")

    platform.supervisor.add("broken", broken)
    client = await aiohttp_client(app)
    await asyncio.sleep(0.05)
    resp = await client.get("/health/ready")
    body = await resp.json()
    assert resp.status == 503 and body["tasks"]["broken"] == "backoff" and body["checks"]["tasks"] is False
