"""The campaign team's tools kept in step, against loopback servers that speak Jira's and AEM Assets' REST shapes:
a campaign sent for review opens a Jira issue whose status is synced back; a Jira outage never blocks the workflow,
is kept on the task and retried; creatives are imported from AEM with the asset's id and version, and a newer
version of the asset puts the refreshed creative under review."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from aiohttp import web

from adapters.http.dam import AemAssets
from adapters.http.retry import RetryPolicy
from adapters.http.tasks import JiraTasks
from adapters.sqlite.leases import SqliteLeases
from adapters.sqlite.tasks import SqliteTaskStore
from app.campaigns.events import CampaignChanged
from app.campaigns.integrations import OPENING_GRACE_S, AssetImport, ReviewTasks
from app.main import PLATFORM, create_app
from state.campaigns import Campaign, Creative, ReviewTask
from tests.conftest import make_config
from tests.integration.integrations.test_dam import AEM_ASSETS, AEM_TOKEN, FakeAem
from tests.integration.integrations.test_tasks import EMAIL, TOKEN, FakeJira

FAST = RetryPolicy(attempts=2, deadline_s=2.0, base_delay_s=0.01, max_delay_s=0.02)
CREATIVE = {"id": "c1", "format": "banner", "markup": "<b>fly</b>", "w": 300, "h": 250}


async def tools(aiohttp_server) -> tuple[FakeJira, FakeAem, str]:
    """One loopback server speaking Jira's and AEM Assets' REST shapes, and its base URL."""
    jira, aem = FakeJira(), FakeAem()
    tool = web.Application()
    tool.router.add_post("/rest/api/2/issue", jira.create)
    tool.router.add_get("/rest/api/2/issue/{key}", jira.get)
    tool.router.add_get("/api/assets/{path:.+}", aem.assets)
    server = await aiohttp_server(tool)
    aem.base = str(server.make_url("")).rstrip("/")
    return jira, aem, aem.base


@pytest.fixture
async def team(aiohttp_client, aiohttp_server, tmp_path, clock):
    jira, aem, base = await tools(aiohttp_server)
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    tracker = JiraTasks(base, EMAIL, TOKEN, "MKT", policy=FAST)
    tasks = ReviewTasks(tracker, "jira", SqliteTaskStore(platform.records_db), platform.campaigns, clock,
                        "https://console.airline.test/")
    platform.bus.subscribe(CampaignChanged, tasks.on_change)
    library = AemAssets(base, basic=("dam-reader", "s3cret"), policy=FAST)
    assets = AssetImport(library, "aem", platform.workflow, platform.campaigns, platform.clock)
    keys = {}
    for name in ("author", "ana"):
        _, key = await platform.api_keys.create(name, "admin")
        keys[name] = {"X-Api-Key": key}
    yield client, keys, jira, aem, tasks, assets
    await tracker.close()
    await library.close()


def with_jira(tmp_path, base: str, **overrides):
    """The app's configuration with Jira, at `base`, as its task tool."""
    return make_config(tmp_path, integrations__task_tool="jira", integrations__jira_url=base,
                       integrations__jira_email=EMAIL, integrations__jira_api_token=TOKEN,
                       integrations__jira_project="MKT", **overrides)


SUMMER = {"id": "summer", "name": "Summer", "advertiser_domain": "contrail.example", "bid_cap_micros": 4_000_000,
          "daily_budget_micros": 100_000_000}


async def import_hero(client, admin: dict[str, str]) -> dict:
    """A new campaign, summer, with the library's hero image imported as its creative: the import's answer."""
    assert (await client.post("/v1/admin/campaigns", json=SUMMER, headers=admin)).status == 201
    resp = await client.post("/v1/admin/campaigns/summer/creatives/import", headers=admin,
                             json={"asset_ids": ["campaigns/summer/hero.jpg"], "w": 300, "h": 250})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def submit_autumn(client) -> dict[str, str]:
    """An admin's key, with which campaign "autumn" is created and sent for review."""
    _, key = await client.app[PLATFORM].api_keys.create("author", "admin")
    admin = {"X-Api-Key": key}
    body = {"id": "autumn", "name": "Autumn", "advertiser_domain": "contrail.example", "bid_cap_micros": 4_000_000,
            "daily_budget_micros": 100_000_000, "creatives": [CREATIVE]}
    resp = await client.post("/v1/admin/campaigns", json=body, headers=admin)
    assert resp.status == 201, await resp.text()
    await step(client, admin, "autumn", "submit")
    return admin


async def step(client, who, campaign_id, action, **body):
    resp = await client.post(f"/v1/admin/campaigns/{campaign_id}/{action}", json=body or None, headers=who)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_review_opens_a_jira_issue_and_its_status_is_synced_back(team):
    client, keys, jira, _, tasks, _ = team
    body = {"id": "spring", "name": "Spring sale", "advertiser_domain": "contrail.example",
            "bid_cap_micros": 4_000_000, "daily_budget_micros": 100_000_000, "creatives": [CREATIVE]}
    await client.post("/v1/admin/campaigns", json=body, headers=keys["author"])
    jira.fail_next = [503, 503]  # Jira is down when the campaign is submitted
    submitted = await step(client, keys["author"], "spring", "submit")
    assert submitted["state"] == "in_review"  # the workflow did not wait for Jira
    await tasks.idle()
    [failed] = await tasks.of_campaign("spring")
    assert failed.status == "failed" and "503" in failed.error and failed.attempts == 1 and not jira.issues

    assert await tasks.sync() == 1  # Jira is back: the next sync opens it
    [task] = await tasks.of_campaign("spring")
    assert (task.status, task.task_key, task.attempts, task.error) == ("open", "MKT-1", 2, "")
    issue = jira.issues["MKT-1"]
    assert issue["summary"] == "Approve campaign: Spring sale" and issue["labels"] == ["contrail", "campaign-review"]
    assert "rule standard, 1 approver(s)" in issue["description"]
    assert "https://console.airline.test/#/campaigns?id=spring" in issue["description"]

    jira.statuses["MKT-1"] = ("In Review", "indeterminate")
    await tasks.sync()
    assert (await tasks.of_campaign("spring"))[0].status == "in_progress"
    jira.statuses["MKT-1"] = ("Done", "done")
    await tasks.sync()
    assert (await tasks.of_campaign("spring"))[0].status == "done"
    assert await tasks.sync() == 0  # a done task is not polled again

    # A change to the approved campaign that needs approval opens a second task.
    await step(client, keys["ana"], "spring", "approve")
    resp = await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 200_000_000},
                              headers=keys["author"])
    assert (await resp.json())["pending"]["daily_budget_micros"] == 200_000_000
    await tasks.idle()
    second = (await tasks.of_campaign("spring"))[-1]
    assert second.task_key == "MKT-2" and "daily_budget_micros" in jira.issues["MKT-2"]["description"]


async def test_creatives_are_imported_from_the_asset_library_and_refreshed_when_the_asset_changes(team):
    client, keys, _, aem, _, assets = team
    await client.post("/v1/admin/campaigns", json=SUMMER, headers=keys["author"])
    campaign = await assets.import_assets("author", "summer", ["campaigns/summer/hero.jpg"], None, None, "banner",
                                          300, 250)
    [creative] = campaign.creatives
    assert (creative.dam, creative.dam_id, creative.dam_version) == ("aem", "campaigns/summer/hero.jpg",
                                                                     "2026-05-01T10:00:00Z")
    assert creative.markup.startswith('<img src="http') and 'width="300"' in creative.markup
    again = await assets.import_assets("author", "summer", ["campaigns/summer/hero.jpg"], None, None, "banner",
                                       300, 250)
    assert len(again.creatives) == 1  # already there: not imported twice

    await step(client, keys["author"], "summer", "submit")
    await step(client, keys["ana"], "summer", "approve")
    AEM_ASSETS["campaigns/summer/hero.jpg"] = {**AEM_ASSETS["campaigns/summer/hero.jpg"],
                                               "modified": "2026-06-01T08:00:00Z"}
    try:
        assert await assets.sync() == 1
    finally:
        AEM_ASSETS["campaigns/summer/hero.jpg"] = {**AEM_ASSETS["campaigns/summer/hero.jpg"],
                                                   "modified": "2026-05-01T10:00:00Z"}
    got = await (await client.get("/v1/admin/campaigns/summer", headers=keys["ana"])).json()
    assert got["state"] == "approved" and got["creatives"][0]["dam_version"] == "2026-05-01T10:00:00Z"
    assert got["pending"]["creatives"][0]["dam_version"] == "2026-06-01T08:00:00Z"  # under review, as any change
    history = await (await client.get("/v1/admin/campaigns/summer/history", headers=keys["ana"])).json()
    assert history["items"][-1]["actor"] == "dam-sync" and history["items"][-1]["action"] == "revise"

    aem.fail_next = [503, 503, 503, 503]
    assert await assets.sync() == 0  # the library failing changes nothing and raises nothing

    # A creative an admin adds while a sync waits on the library is kept by the sync's edit.
    AEM_ASSETS["campaigns/summer/hero.jpg"] = {**AEM_ASSETS["campaigns/summer/hero.jpg"],
                                               "modified": "2026-07-01T08:00:00Z"}
    aem.fail_next, aem.held, asked = [], asyncio.Event(), len(aem.requests)
    try:
        syncing = asyncio.create_task(assets.sync())
        while len(aem.requests) == asked:
            await asyncio.sleep(0.01)
        added = await client.post("/v1/admin/campaigns/summer/creatives", headers=keys["author"],
                                  json={**CREATIVE, "id": "c-added"})
        assert added.status in (200, 201), await added.text()
        aem.held.set()
        assert await syncing == 1
    finally:
        aem.held = None
        AEM_ASSETS["campaigns/summer/hero.jpg"] = {**AEM_ASSETS["campaigns/summer/hero.jpg"],
                                                   "modified": "2026-05-01T10:00:00Z"}
    got = await (await client.get("/v1/admin/campaigns/summer", headers=keys["ana"])).json()
    assert [(c["id"], c.get("dam_version")) for c in got["pending"]["creatives"]] == [
        (creative.id, "2026-07-01T08:00:00Z"), ("c-added", None)]


async def test_the_teams_folder_is_what_an_import_takes_and_what_a_sync_lists_once(team):
    client, keys, _, aem, _, _ = team
    platform = client.app[PLATFORM]
    library = AemAssets(aem.base, basic=("dam-reader", "s3cret"), policy=FAST)
    assets = AssetImport(library, "aem", platform.workflow, platform.campaigns, platform.clock,
                         folder="campaigns/summer")
    body = {"id": "autumn", "name": "Autumn", "advertiser_domain": "contrail.example", "bid_cap_micros": 4_000_000,
            "daily_budget_micros": 100_000_000}
    await client.post("/v1/admin/campaigns", json=body, headers=keys["author"])
    campaign = await assets.import_assets("author", "autumn", [], None, None, "banner", 300, 250)  # the folder's
    assert sorted(c.dam_id for c in campaign.creatives) == sorted(AEM_ASSETS)
    aem.requests.clear()
    assert await assets.sync() == 0
    assert [r.split("?")[0] for r in aem.requests] == ["/api/assets/campaigns/summer.json"]  # one listing, no more
    AEM_ASSETS["campaigns/summer/banner.png"] = {**AEM_ASSETS["campaigns/summer/banner.png"],
                                                 "modified": "2026-06-02T10:00:00Z"}
    aem.requests.clear()
    try:
        assert await assets.sync() == 1
    finally:
        AEM_ASSETS["campaigns/summer/banner.png"] = {**AEM_ASSETS["campaigns/summer/banner.png"],
                                                     "modified": "2026-05-02T10:00:00Z"}
    assert [r.split("?")[0] for r in aem.requests] == ["/api/assets/campaigns/summer.json",
                                                       "/api/assets/campaigns/summer/banner.png.json"]
    got = await (await client.get("/v1/admin/campaigns/autumn", headers=keys["ana"])).json()
    assert {c["dam_id"]: c["dam_version"] for c in got["creatives"]}["campaigns/summer/banner.png"] == \
        "2026-06-02T10:00:00Z"  # a draft takes the change at once
    await library.close()


async def test_configured_tools_are_wired_into_the_app(aiohttp_client, aiohttp_server, tmp_path, clock):
    jira, aem, base = await tools(aiohttp_server)
    config = with_jira(tmp_path, base, integrations__dam="aem", integrations__dam_url=base,
                       integrations__dam_token="unused")
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    admin = await submit_autumn(client)
    await platform.campaigns_domain.tasks.idle()
    tasks = await (await client.get("/v1/admin/campaigns/autumn/tasks", headers=admin)).json()
    assert [(t["tool"], t["task_key"], t["status"]) for t in tasks["items"]] == [("jira", "MKT-1", "open")]
    task = (await (await client.get("/v1/admin/campaigns/autumn", headers=admin)).json())["review_task"]
    assert task == tasks["items"][0] and task["url"].endswith("/browse/MKT-1")   # the link, on the campaign
    # AEM with a token (no Basic credentials): the fake AEM refuses it, and the import says the library failed.
    resp = await client.post("/v1/admin/campaigns/autumn/creatives/import", headers=admin,
                             json={"asset_ids": ["campaigns/summer/hero.jpg"], "w": 300, "h": 250})
    assert resp.status == 503 and "asset library failed" in (await resp.json())["error"]["message"]
    resp = await client.post("/v1/admin/campaigns/autumn/creatives/import", headers=admin, json={})
    assert resp.status == 400 and "asset_ids, a folder or a query" in (await resp.json())["error"]["message"]
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_integration_calls_total{outcome="ok",tool="jira"} 1.0' in metrics


async def test_the_configured_issue_type_and_aem_basic_auth_reach_the_tools(aiohttp_client, aiohttp_server,
                                                                            tmp_path, clock):
    """integrations.jira_issue_type and aem_login/aem_password, set as an operator sets them, used by the app."""
    jira, aem, base = await tools(aiohttp_server)
    config = with_jira(tmp_path, base, integrations__jira_issue_type="Story", integrations__dam="aem",
                       integrations__dam_url=base, integrations__aem_login="dam-reader",
                       integrations__aem_password="s3cret")
    client = await aiohttp_client(create_app(config, clock=clock))
    admin = await submit_autumn(client)
    await client.app[PLATFORM].campaigns_domain.tasks.idle()
    assert jira.issues["MKT-1"]["issuetype"] == {"name": "Story"}
    imported = await import_hero(client, admin)
    assert [c.get("dam_id") for c in imported["creatives"]] == ["campaigns/summer/hero.jpg"]
    assert aem.authorizations and set(aem.authorizations) == {"Basic ZGFtLXJlYWRlcjpzM2NyZXQ="}


async def test_a_stopping_server_finishes_the_review_tasks_it_was_opening(aiohttp_client, aiohttp_server, tmp_path,
                                                                          clock):
    jira, aem, base = await tools(aiohttp_server)
    jira.delay_s = 0.5  # the issue is still being created when the server is told to stop
    config = with_jira(tmp_path, base)
    client = await aiohttp_client(create_app(config, clock=clock))
    admin = await submit_autumn(client)
    await client.close()
    assert list(jira.issues) == ["MKT-1"]

    again = await aiohttp_client(create_app(config, clock=clock))
    tasks = await (await again.get("/v1/admin/campaigns/autumn/tasks", headers=admin)).json()
    assert [(t["tool"], t["task_key"], t["status"]) for t in tasks["items"]] == [("jira", "MKT-1", "open")]
    assert jira.posts == 1  # the restart did not open it a second time


async def test_a_task_is_stored_before_the_tool_is_called_and_a_sync_meanwhile_does_not_open_it_again(
        aiohttp_client, aiohttp_server, tmp_path, clock):
    """A process killed while the tool creates the issue leaves the task stored, unopened, for the next sync."""
    jira, aem, base = await tools(aiohttp_server)
    jira.delay_s = 0.5
    client = await aiohttp_client(create_app(with_jira(tmp_path, base), clock=clock))
    platform = client.app[PLATFORM]
    admin = await submit_autumn(client)
    while jira.posts == 0:  # the tool is being called
        await asyncio.sleep(0.01)
    tasks = platform.campaigns_domain.tasks
    [stored] = await tasks.of_campaign("autumn")
    assert (stored.task_id, stored.status, stored.error, stored.attempts) == ("", "opening", "", 1)
    await tasks.sync()  # the periodic sync, while the first call is still out: it leaves that task alone
    await tasks.idle()
    assert jira.posts == 1 and list(jira.issues) == ["MKT-1"]
    listed = await (await client.get("/v1/admin/campaigns/autumn/tasks", headers=admin)).json()
    assert [(t["task_key"], t["status"]) for t in listed["items"]] == [("MKT-1", "open")]


async def test_an_attempt_cut_short_by_a_kill_is_retried_once_old_and_two_syncs_never_both_retry(team, clock):
    client, keys, jira, _, tasks, _ = team
    # A campaign in review (loaded as such: the step's own task is the one a killed process left, below).
    await client.app[PLATFORM].campaigns.create("test", Campaign(
        "spring", "Spring sale", "contrail.example", 4_000_000, 100_000_000, state="in_review",
        creatives=[msgspec.convert(CREATIVE, Creative)], approval_rule="standard", approvals_required=1),
        audit=False)
    store = SqliteTaskStore(client.app[PLATFORM].records_db)
    # What a process killed during the tool's call leaves behind: the task stored, its attempt under way.
    await store.put(ReviewTask("spring", clock.now(), "jira", "", "", "", "opening", clock.now(), "", 1))
    assert await tasks.sync() == 1 and jira.posts == 0  # under way, maybe on another node: left alone
    clock.advance(OPENING_GRACE_S + 1)
    [stale] = await store.unfinished(10)
    assert await tasks.sync() == 1 and jira.posts == 1  # too old to be under way: opened
    [task] = await tasks.of_campaign("spring")
    assert (task.task_key, task.status, task.attempts) == ("MKT-1", "open", 2)
    # Two syncs that read the same unopened task: the second one's attempt is refused, so it is opened once.
    await store.put(msgspec.structs.replace(stale, opened_at=stale.opened_at + 1, status="failed", error="503",
                                            attempts=3))
    [failed] = [t for t in await store.unfinished(10) if not t.task_id]
    assert await store.claim(failed, clock.now())
    assert not await store.claim(failed, clock.now())


async def test_only_the_node_whose_turn_it_is_syncs_with_the_task_tool(aiohttp_client, aiohttp_server, tmp_path,
                                                                       clock):
    """Nodes sharing a store take turns (a lease per sync): two would poll, open and push everything twice."""
    jira, aem, base = await tools(aiohttp_server)
    client = await aiohttp_client(create_app(with_jira(tmp_path, base, integrations__task_sync_interval_s=0.05),
                                             clock=clock))
    platform = client.app[PLATFORM]
    await submit_autumn(client)
    tasks = platform.campaigns_domain.tasks
    await tasks.idle()
    assert [t.status for t in await tasks.of_campaign("autumn")] == ["open"]
    other_node = SqliteLeases(platform.records_db)
    while not await other_node.hold("review_task_sync", "other-node", clock.now(), 60.0):
        clock.advance(61.0)  # this node's own turn lapses (the manual clock stands still otherwise)
    # A pass this node began before the jump goes on with the lease it began with (in real time a pass is far
    # shorter than a lease): let it end before the task moves in Jira.
    await asyncio.sleep(0.3)
    jira.statuses["MKT-1"] = ("Done", "done")
    await asyncio.sleep(0.4)  # several passes: none is this node's
    assert [t.status for t in await tasks.of_campaign("autumn")] == ["open"]
    clock.advance(61.0)  # the other node stopped renewing: its turn lapses, and this node takes it over
    for _ in range(100):
        if [t.status for t in await tasks.of_campaign("autumn")] == ["done"]:
            break
        await asyncio.sleep(0.02)
    assert [t.status for t in await tasks.of_campaign("autumn")] == ["done"]


async def test_a_stop_waits_for_a_slow_tracker_only_its_grace_and_the_next_start_opens_the_task(
        aiohttp_client, aiohttp_server, tmp_path, clock):
    jira, aem, base = await tools(aiohttp_server)
    jira.delay_s = 30.0  # far longer than the stop may wait
    config = with_jira(tmp_path, base, server__shutdown_grace_s=0.5)
    client = await aiohttp_client(create_app(config, clock=clock))
    admin = await submit_autumn(client)
    started = asyncio.get_running_loop().time()
    await client.close()
    assert asyncio.get_running_loop().time() - started < 15   # not the tracker's 30 s (a loaded machine stops slowly)
    assert jira.issues == {}

    jira.delay_s = 0.0
    again = await aiohttp_client(create_app(config, clock=clock))
    await again.app[PLATFORM].campaigns_domain.tasks.sync()
    tasks = await (await again.get("/v1/admin/campaigns/autumn/tasks", headers=admin)).json()
    assert [(t["tool"], t["task_key"], t["status"]) for t in tasks["items"]] == [("jira", "MKT-1", "open")]


async def hero_imported(aiohttp_client, aiohttp_server, tmp_path, clock) -> tuple[Any, FakeAem, dict, dict]:
    """The app with AEM as its asset library (one attempt a sync), an admin's headers, and campaign summer with the
    hero image imported: (client, the library, the headers, the creative)."""
    _, aem, base = await tools(aiohttp_server)
    config = make_config(tmp_path, integrations__dam="aem", integrations__dam_url=base,
                         integrations__dam_token=AEM_TOKEN, integrations__max_attempts=1)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("author", "admin")
    admin = {"X-Api-Key": key}
    [creative] = (await import_hero(client, admin))["creatives"]
    return client, aem, admin, creative


async def test_a_creative_whose_asset_cannot_be_read_shows_on_its_campaign_until_a_sync_reads_it(
        aiohttp_client, aiohttp_server, tmp_path, clock):
    client, aem, admin, creative = await hero_imported(aiohttp_client, aiohttp_server, tmp_path, clock)
    platform = client.app[PLATFORM]

    async def status() -> dict:
        resp = await client.get("/v1/admin/campaigns/summer/assets", headers=admin)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def failing_gauge() -> str:
        text = await (await client.get("/metrics")).text()
        return next(line for line in text.splitlines() if line.startswith("contrail_dam_assets_failing "))

    assert await status() == {"campaign_id": "summer", "dam": "aem", "last_sync_at": None, "folder_error": None,
                              "failing": []}
    sync = platform.campaigns_domain.assets.sync
    first = clock.now()
    aem.fail_next = [503]
    assert await sync() == 0  # the creative keeps its version; the campaign says why it is stale
    [problem] = (await status())["failing"]
    assert (problem["creative_id"], problem["dam_id"], problem["since"], problem["failures"]) == (
        creative["id"], "campaigns/summer/hero.jpg", first, 1)
    assert "503" in problem["error"] and await failing_gauge() == "contrail_dam_assets_failing 1.0"
    clock.advance(300)
    aem.fail_next = [503]
    await sync()
    now = await status()
    assert now["last_sync_at"] == clock.now() and [(p["since"], p["failures"]) for p in now["failing"]] == [
        (first, 2)]  # failing since the first sync that failed

    assert await sync() == 0 and (await status())["failing"] == []  # read again: nothing stale
    assert await failing_gauge() == "contrail_dam_assets_failing 0.0"
    assert (await client.get("/v1/admin/campaigns/nope/assets", headers=admin)).status == 404
    assert (await client.get("/v1/admin/campaigns/summer/assets")).status == 401


async def test_an_asset_past_a_creatives_limits_is_refused_by_the_import_and_left_stale_by_the_sync(
        aiohttp_client, aiohttp_server, tmp_path, clock):
    """A library's metadata meets the limits a person's creative does: an import answers 400 naming the one broken,
    and a new version past them leaves the creative as it was, shown as failing on its campaign."""
    client, _, admin, creative = await hero_imported(aiohttp_client, aiohttp_server, tmp_path, clock)
    platform = client.app[PLATFORM]

    huge = "campaigns/summer/huge.png"
    AEM_ASSETS[huge] = {"dc:format": "image/png", "tiff:ImageWidth": 50_000, "tiff:ImageLength": 250,
                        "modified": "2026-05-04T10:00:00Z"}
    hero = AEM_ASSETS["campaigns/summer/hero.jpg"]
    try:
        resp = await client.post("/v1/admin/campaigns/summer/creatives/import", headers=admin,
                                 json={"asset_ids": [huge]})
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert huge in error["message"] and "10000" in error["message"] and "$.w" in error["message"]

        AEM_ASSETS["campaigns/summer/hero.jpg"] = {**hero, "dc:format": "image/" + "x" * 300,
                                                   "modified": "2026-06-01T08:00:00Z"}
        assert await platform.campaigns_domain.assets.sync() == 0
        resp = await client.get("/v1/admin/campaigns/summer/assets", headers=admin)
        [problem] = (await resp.json())["failing"]
        assert problem["creative_id"] == creative["id"] and "$.mimes" in problem["error"]
        got = await (await client.get("/v1/admin/campaigns/summer", headers=admin)).json()
        assert got["creatives"] == [creative] and got["pending"] is None
    finally:
        AEM_ASSETS.pop(huge, None)
        AEM_ASSETS["campaigns/summer/hero.jpg"] = hero
