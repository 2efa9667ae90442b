"""The workflow's hypothesis state machine (tests/unit/app/campaigns/test_workflow_machine.py) driven through the
real app: every step is a request to the REST API by one of three admins' API keys, a refusal is its HTTP status
(403, 409 or 400) and changes nothing, and the scheduler's pass is the app's own. The model of the rules, the steps
and the invariants are the unit machine's; only the way each step reaches the workflow differs."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine

from app.campaigns.events import CampaignChanged
from app.errors import Conflict, Forbidden, InvalidInput
from app.main import PLATFORM, create_app
from app.runtime.clock import ManualClock
from state.campaigns import Campaign
from tests.conftest import make_config
from tests.unit.app.campaigns.test_workflow_machine import ADMINS, T0, WorkflowMachine


class HttpWorkflow:
    """The workflow's calls as the REST API takes them, each refusal raised as the error its status stands for."""

    def __init__(self, client: TestClient, keys: dict[str, dict[str, str]], app_workflow: Any) -> None:
        self._client = client
        self._keys = keys
        self._workflow = app_workflow

    async def _call(self, actor: str, method: str, path: str, body: dict | None = None) -> Any:
        resp = await self._client.request(method, path, json=body, headers=self._keys[actor])
        payload = await resp.json()
        message = payload.get("error", {}).get("message", "") if isinstance(payload, dict) else ""
        if resp.status == 403:
            raise Forbidden(message)
        if resp.status == 409:
            raise Conflict(message)
        if resp.status == 400:
            raise InvalidInput(message)
        assert resp.status in (200, 201), (method, path, resp.status, payload)
        return payload

    async def create(self, actor: str, c: Campaign) -> None:
        await self._call(actor, "POST", "/v1/admin/campaigns", {
            "id": c.id, "name": c.name, "advertiser_domain": c.advertiser_domain, "bid_cap_micros": c.bid_cap_micros,
            "daily_budget_micros": c.daily_budget_micros, "channels": c.channels,
            "creatives": [{"id": k.id, "format": k.format, "markup": k.markup, "w": k.w, "h": k.h}
                          for k in c.creatives],
            "starts_at": c.starts_at, "ends_at": c.ends_at})

    async def edit(self, actor: str, campaign_id: str, changes: dict[str, Any], *, system: bool = False) -> None:
        if system:  # a sync's edit has no endpoint: it is the app's own workflow, as its asset sync calls it
            await self._workflow.edit(actor, campaign_id, changes, system=True)
            return
        await self._call(actor, "PATCH", f"/v1/admin/campaigns/{campaign_id}", changes)

    async def _step(self, actor: str, campaign_id: str, action: str, body: dict | None = None) -> None:
        await self._call(actor, "POST", f"/v1/admin/campaigns/{campaign_id}/{action}", body or {})

    async def submit(self, actor: str, campaign_id: str) -> None:
        await self._step(actor, campaign_id, "submit")

    async def approve(self, actor: str, campaign_id: str) -> None:
        await self._step(actor, campaign_id, "approve")

    async def reject(self, actor: str, campaign_id: str) -> None:
        await self._step(actor, campaign_id, "reject")

    async def schedule(self, actor: str, campaign_id: str, starts_at: float | None = None) -> None:
        await self._step(actor, campaign_id, "schedule", {"starts_at": starts_at} if starts_at is not None else None)

    async def pause(self, actor: str, campaign_id: str) -> None:
        await self._step(actor, campaign_id, "pause")

    async def resume(self, actor: str, campaign_id: str) -> None:
        await self._step(actor, campaign_id, "resume")

    async def archive(self, actor: str, campaign_id: str) -> None:
        await self._step(actor, campaign_id, "archive")

    async def history(self, campaign_id: str) -> list[SimpleNamespace]:
        answer = await self._call(ADMINS[0], "GET", f"/v1/admin/campaigns/{campaign_id}/history")
        return [SimpleNamespace(**entry) for entry in answer["items"]]

    async def tick(self) -> int:
        return await self._workflow.tick()  # the app's scheduler pass, on its clock (its periodic run is held off)


class HttpWorkflowMachine(WorkflowMachine):
    def __init__(self) -> None:
        RuleBasedStateMachine.__init__(self)  # not the unit machine's set-up: the app builds its own stores
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = ManualClock(T0)
        config = make_config(Path(self.tmp.name), campaigns__scheduler_interval_s=86_400)

        async def start() -> TestClient:  # the client belongs to the loop it is made on
            client = TestClient(TestServer(create_app(config, clock=self.clock)))
            await client.start_server()
            return client
        self.client = self.run(start())
        platform = self.client.app[PLATFORM]
        keys, self.names = {}, {}
        for name in ADMINS:
            made, key = self.run(platform.api_keys.create(name, "admin"))
            keys[name], self.names[f"api_key:{made.id}"] = {"X-Api-Key": key}, name
        self.store = platform.campaign_store
        self.campaigns = platform.campaigns
        self.published: list = []
        platform.bus.subscribe(CampaignChanged, self.published.append)
        self.workflow = HttpWorkflow(self.client, keys, platform.workflow)  # type: ignore[assignment]
        self.model = {}

    def who(self, principal: str) -> str:
        return self.names.get(principal, principal)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def teardown(self) -> None:
        self.run(self.client.close())
        self.loop.close()
        self.tmp.cleanup()


# Each example starts an app (about a third of a second): fewer examples than the unit machine's 120, the same rules.
HttpWorkflowMachine.TestCase.settings = settings(max_examples=15, stateful_step_count=30, deadline=None)
TestWorkflowThroughTheApiMatchesItsRules = HttpWorkflowMachine.TestCase
