"""A review task is opened in the background once the step into review is durable: a process killed between the
acknowledged step and that opening's storing the task leaves a review with no task at all. The review-task sync finds
such a review (a campaign awaiting approval with no task opened since its review began) and opens its task, once:
against the real server killed with kill -9 and a loopback Jira, and in the app on a manual clock for the rules."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import aiohttp
import pytest
from aiohttp import web

from adapters.http.tasks import JiraTasks
from adapters.sqlite.tasks import SqliteTaskStore
from app.campaigns import integrations
from app.campaigns.events import CampaignChanged
from app.campaigns.integrations import UNSTORED_GRACE_S, ReviewTasks
from app.main import PLATFORM, create_app
from bench.server import ServerProcess
from state.campaigns import ReviewTask
from tests.conftest import make_config
from tests.integration.campaigns.test_team_tools import CREATIVE, FAST, step, tools
from tests.integration.integrations.test_tasks import EMAIL, TOKEN, FakeJira


def body(campaign_id: str) -> dict:
    return {"id": campaign_id, "name": campaign_id.title(), "advertiser_domain": "contrail.example",
            "bid_cap_micros": 4_000_000, "daily_budget_micros": 100_000_000, "creatives": [CREATIVE]}


def issues_of(jira: FakeJira, campaign_id: str) -> list[str]:
    """The Jira issues opened for the campaign's reviews (their description starts with the campaign's id)."""
    return [key for key, fields in jira.issues.items() if fields["description"].startswith(f"Campaign {campaign_id} (")]


# ---- the real server, killed -9 ----

# Storing the task of campaign "late" takes a second or so (a cross join in a trigger): the writer is still at it when
# the kill lands, so nothing of it is committed.
SLOW_TASK_WRITE = """
CREATE TABLE slow_rows(n INTEGER);
WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5000) INSERT INTO slow_rows SELECT n FROM c;
CREATE TRIGGER slow_task_write BEFORE INSERT ON campaign_tasks WHEN NEW.campaign_id = 'late'
BEGIN SELECT count(*) FROM slow_rows a, slow_rows b; END;
"""


async def test_kill_9_right_after_a_submit_is_acknowledged_still_opens_its_review_task_once(aiohttp_server,
                                                                                           tmp_path):
    jira = FakeJira()
    tool = web.Application()
    tool.router.add_post("/rest/api/2/issue", jira.create)
    tool.router.add_get("/rest/api/2/issue/{key}", jira.get)
    jira_server = await aiohttp_server(tool)
    server = ServerProcess(tmp_path / "var", CONTRAIL__INTEGRATIONS__TASK_TOOL="jira",
                           CONTRAIL__INTEGRATIONS__JIRA_URL=str(jira_server.make_url("")).rstrip("/"),
                           CONTRAIL__INTEGRATIONS__JIRA_EMAIL=EMAIL, CONTRAIL__INTEGRATIONS__JIRA_API_TOKEN=TOKEN,
                           CONTRAIL__INTEGRATIONS__JIRA_PROJECT="MKT",
                           CONTRAIL__INTEGRATIONS__TASK_SYNC_INTERVAL_S="0.5")
    key = server.cli("create-api-key", "--name", "author", "--role", "admin").stdout.strip().splitlines()[-1]
    admin = {"X-Api-Key": key}
    try:
        await asyncio.to_thread(server.start)
        async with aiohttp.ClientSession() as session:
            async def campaign(campaign_id: str) -> dict:
                async with session.get(f"{server.url}/v1/admin/campaigns/{campaign_id}", headers=admin) as resp:
                    assert resp.status == 200, await resp.text()
                    return await resp.json()

            for campaign_id in ("early", "late"):
                async with session.post(f"{server.url}/v1/admin/campaigns", json=body(campaign_id),
                                        headers=admin) as resp:
                    assert resp.status == 201, await resp.text()
            # A review whose task was opened before the kill: the restart must not open it again.
            async with session.post(f"{server.url}/v1/admin/campaigns/early/submit", headers=admin) as resp:
                assert resp.status == 200, await resp.text()
            deadline = time.monotonic() + 10
            while ((await campaign("early"))["review_task"] or {}).get("status") != "open":
                assert time.monotonic() < deadline, "the first review's task was never opened"
                await asyncio.sleep(0.05)
            # kill -9 the moment the submit is acknowledged, before its background opening has stored the task: a
            # store slow to take that one write (a trigger on it, in the server's own database) makes sure the kill
            # lands first, as it did for the audit under load.
            with sqlite3.connect(server.data_dir / "contrail.db") as db:
                db.executescript(SLOW_TASK_WRITE)
            async with session.post(f"{server.url}/v1/admin/campaigns/late/submit", headers=admin) as resp:
                server.proc.send_signal(signal.SIGKILL)
                assert resp.status == 200
            server.proc.wait(10)
            killed_at = time.monotonic()
            with sqlite3.connect(server.data_dir / "contrail.db") as db:  # what the killed process left
                db.executescript("DROP TRIGGER slow_task_write; DROP TABLE slow_rows;")
                left = db.execute("SELECT campaign_id, task_key FROM campaign_tasks ORDER BY campaign_id").fetchall()
                state = db.execute("SELECT json_extract(body, '$.state') FROM campaigns WHERE id = 'late'").fetchone()
            assert state == ("in_review",)  # the acknowledged step is durable
            assert left == [("early", "MKT-1")], left  # but its review has no task stored, and none in Jira
            assert list(jira.issues) == ["MKT-1"]

            await asyncio.to_thread(server.start)
            deadline = time.monotonic() + 20
            while ((await campaign("late"))["review_task"] or {}).get("status") != "open":
                assert time.monotonic() < deadline, "the acknowledged review never got its task"
                await asyncio.sleep(0.1)
            assert time.monotonic() - killed_at >= UNSTORED_GRACE_S - 1  # not before its own opening could store it
            await asyncio.sleep(1.0)  # more passes of the sync: none opens anything again
            for campaign_id in ("early", "late"):
                shown = await campaign(campaign_id)
                assert shown["state"] == "in_review"
                [issue] = issues_of(jira, campaign_id)  # exactly one issue per review, in Jira
                task = shown["review_task"]  # and its link on the campaign
                assert (task["task_key"], task["status"]) == (issue, "open")
                assert task["url"].endswith(f"/browse/{issue}")
                async with session.get(f"{server.url}/v1/admin/campaigns/{campaign_id}/tasks",
                                       headers=admin) as resp:
                    assert [t["task_key"] for t in (await resp.json())["items"]] == [issue]
            assert jira.posts == 2 and sorted(jira.issues) == ["MKT-1", "MKT-2"]
    finally:
        server.stop()


# ---- the rules, in the app on a manual clock ----

class GatedStore(SqliteTaskStore):
    """The task store, whose writes wait while `gate` is clear (an opening on its way to the store)."""

    def __init__(self, db) -> None:
        super().__init__(db)
        self.gate = asyncio.Event()
        self.gate.set()

    async def put(self, task: ReviewTask) -> None:
        await self.gate.wait()
        await super().put(task)


@pytest.fixture
async def app(aiohttp_client, aiohttp_server, tmp_path, clock):
    """The app, a loopback Jira, and ReviewTasks whose background openings happen only while `listening[0]`: a
    review taken while it is False is one whose process was killed before its task was stored."""
    jira, _, base = await tools(aiohttp_server)
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    tracker = JiraTasks(base, EMAIL, TOKEN, "MKT", policy=FAST)
    store = GatedStore(platform.records_db)
    tasks = ReviewTasks(tracker, "jira", store, platform.campaigns, clock)
    listening = [True]
    platform.bus.subscribe(CampaignChanged, lambda event: tasks.on_change(event) if listening[0] else None)
    keys = {}
    for name in ("author", "ana"):
        _, key = await platform.api_keys.create(name, "admin")
        keys[name] = {"X-Api-Key": key}
    yield client, keys, jira, tasks, store, listening
    await tracker.close()


async def created(client, keys, campaign_id: str) -> None:
    resp = await client.post("/v1/admin/campaigns", json=body(campaign_id), headers=keys["author"])
    assert resp.status == 201, await resp.text()


async def test_a_review_whose_task_was_never_stored_is_opened_by_the_sync_once_old_enough(app, clock):
    client, keys, jira, tasks, _, listening = app
    await created(client, keys, "spring")
    listening[0] = False
    await step(client, keys["author"], "spring", "submit")
    assert await tasks.of_campaign("spring") == []
    assert await tasks.sync() == 0 and jira.posts == 0  # so young its own opening may still be storing it
    clock.advance(UNSTORED_GRACE_S)
    assert await tasks.sync() == 1
    [task] = await tasks.of_campaign("spring")
    assert (task.task_key, task.status, task.attempts) == ("MKT-1", "open", 1)
    clock.advance(60)
    await tasks.sync()
    await tasks.sync()
    assert jira.posts == 1 and [t.task_key for t in await tasks.of_campaign("spring")] == ["MKT-1"]


async def test_a_review_with_its_task_stored_is_never_opened_again_whatever_the_task_became(app, clock):
    client, keys, jira, tasks, _, _ = app
    jira.fail_next = [400]  # refused: the stored task is the stored tasks' business (retried, then given up)
    await created(client, keys, "spring")
    await step(client, keys["author"], "spring", "submit")
    await tasks.idle()
    clock.advance(UNSTORED_GRACE_S + 1)
    [failed] = await tasks.of_campaign("spring")
    assert failed.status == "failed"
    await SqliteTaskStore(client.app[PLATFORM].records_db).put(
        ReviewTask(failed.campaign_id, failed.opened_at, "jira", "", "", "", "given_up", clock.now(), "400", 10))
    assert await tasks.sync() == 0 and jira.posts == 1  # given up: not opened again (a new submit opens a new one)


async def test_a_task_being_stored_is_not_taken_for_a_missing_one(app, clock):
    client, keys, jira, tasks, store, _ = app
    await created(client, keys, "spring")
    store.gate.clear()  # the background opening is on its way to the store
    await step(client, keys["author"], "spring", "submit")
    clock.advance(UNSTORED_GRACE_S + 60)
    assert await tasks.sync() == 0 and jira.posts == 0
    store.gate.set()
    await tasks.idle()
    await tasks.sync()
    assert [t.task_key for t in await tasks.of_campaign("spring")] == ["MKT-1"] and jira.posts == 1


async def test_a_rejected_campaign_submitted_again_gets_one_new_task_even_if_its_old_one_is_done(app, clock):
    client, keys, jira, tasks, _, listening = app
    await created(client, keys, "spring")
    await step(client, keys["author"], "spring", "submit")
    await tasks.idle()
    jira.statuses["MKT-1"] = ("Done", "done")
    await tasks.sync()
    await step(client, keys["ana"], "spring", "reject")
    clock.advance(60)
    await step(client, keys["author"], "spring", "submit")  # rejected -> draft -> in_review: one review
    await tasks.idle()
    assert [t.task_key for t in await tasks.of_campaign("spring")] == ["MKT-1", "MKT-2"] and jira.posts == 2

    jira.statuses["MKT-2"] = ("Done", "done")  # done in Jira while in review: it stays done
    await tasks.sync()
    await step(client, keys["ana"], "spring", "reject")
    clock.advance(60)
    listening[0] = False  # killed before the third review's task was stored: MKT-2, done, is the second's
    await step(client, keys["author"], "spring", "submit")
    clock.advance(UNSTORED_GRACE_S)
    await tasks.sync()
    assert [(t.task_key, t.status) for t in await tasks.of_campaign("spring")] == [
        ("MKT-1", "done"), ("MKT-2", "done"), ("MKT-3", "open")]
    assert "Spring" in jira.issues["MKT-3"]["summary"]


async def test_changes_under_review_whose_task_was_never_stored_get_theirs(app, clock):
    client, keys, jira, tasks, _, listening = app
    await created(client, keys, "spring")
    await step(client, keys["author"], "spring", "submit")
    await step(client, keys["ana"], "spring", "approve")
    await tasks.idle()
    clock.advance(60)
    listening[0] = False
    resp = await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 200_000_000},
                              headers=keys["author"])
    assert resp.status == 200 and (await resp.json())["pending"] is not None
    clock.advance(UNSTORED_GRACE_S)
    await tasks.sync()
    assert [(t.task_key, t.status) for t in await tasks.of_campaign("spring")] == [("MKT-1", "open"),
                                                                                   ("MKT-2", "open")]
    assert "daily_budget_micros" in jira.issues["MKT-2"]["description"]
    await tasks.sync()
    assert [(t.task_key, t.status) for t in await tasks.of_campaign("spring")] == [("MKT-1", "closed"),
                                                                                   ("MKT-2", "open")]
    assert jira.posts == 2


async def test_a_pass_opens_a_bounded_number_of_missing_tasks_the_oldest_first(app, clock, monkeypatch):
    client, keys, jira, tasks, _, listening = app
    monkeypatch.setattr(integrations, "MISSING_BATCH", 2)
    listening[0] = False
    for campaign_id in ("c0", "c1", "c2"):
        await created(client, keys, campaign_id)
        await step(client, keys["author"], campaign_id, "submit")
        clock.advance(1)
    clock.advance(UNSTORED_GRACE_S)
    assert await tasks.sync() == 2
    assert [issues_of(jira, c) for c in ("c0", "c1", "c2")] == [["MKT-1"], ["MKT-2"], []]
    assert await tasks.sync() == 2 + 1  # the two opened are synced, and the third is opened
    assert [issues_of(jira, c) for c in ("c0", "c1", "c2")] == [["MKT-1"], ["MKT-2"], ["MKT-3"]]
