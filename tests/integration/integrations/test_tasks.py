"""Jira and Asana adaptors against loopback servers that speak their REST shapes, check credentials and bodies as
the real tools do, and fail on purpose."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.http.retry import IntegrationError, RetryPolicy
from adapters.http.tasks import AsanaTasks, JiraTasks, TaskLink, TaskStatus
from app.campaigns.wiring import task_tracker
from app.config import load_config
from tests.integration.integrations.helpers import Sleeps

FAST = RetryPolicy(attempts=3, deadline_s=5.0, base_delay_s=0.01, max_delay_s=0.05)
EMAIL, TOKEN = "ops@airline.test", "jira-api-token-1"


class FakeJira:
    """Jira REST v2's create-issue and get-issue, with Jira's error bodies."""

    def __init__(self) -> None:
        self.issues: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, tuple[str, str]] = {}
        self.fail_next: list[int] = []
        self.posts = 0
        self.reads: list[str] = []  # the issue keys asked for, in order
        self.delay_s = 0.0  # how long each create takes to answer
        self.bodies: list[Any] = []  # each create's body, as sent

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == aiohttp.encode_basic_auth(EMAIL, TOKEN)

    async def create(self, request: web.Request) -> web.Response:
        self.posts += 1
        self.bodies.append(await request.json())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next:
            return web.json_response({"errorMessages": ["Service unavailable"], "errors": {}},
                                     status=self.fail_next.pop(0), headers={"Retry-After": "1"})
        if not self._authorised(request):
            return web.Response(status=401, text="Client must be authenticated to access this resource.")
        fields = (await request.json()).get("fields") or {}
        errors: dict[str, str] = {}
        if not str(fields.get("summary") or "").strip():
            errors["summary"] = "You must specify a summary of the issue."
        if (fields.get("project") or {}).get("key") != "MKT":
            errors["project"] = "valid project is required"
        if (fields.get("issuetype") or {}).get("name") not in ("Task", "Bug", "Story"):
            errors["issuetype"] = "valid issue type is required"
        for label in fields.get("labels") or []:
            if " " in label:
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        if not isinstance(fields.get("description", ""), str):
            errors["description"] = "Operation value must be a string"
        if errors:
            return web.json_response({"errorMessages": [], "errors": errors}, status=400)
        issue_id = str(10000 + len(self.issues))
        key = f"MKT-{len(self.issues) + 1}"
        self.issues[key] = fields
        self.statuses[key] = ("To Do", "new")
        return web.json_response({"id": issue_id, "key": key, "self": f"{request.url.origin()}/rest/api/2/issue/"
                                                                      f"{issue_id}"}, status=201)

    async def get(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401, text="Client must be authenticated to access this resource.")
        key = request.match_info["key"]
        self.reads.append(key)
        if key not in self.statuses:
            return web.json_response({"errorMessages": ["Issue does not exist or you do not have permission to see "
                                                        "it."], "errors": {}}, status=404)
        assert request.query.get("fields") == "status"
        name, category = self.statuses[key]
        return web.json_response({"id": "10000", "key": key, "fields": {"status": {
            "name": name, "id": "3", "statusCategory": {"id": 4, "key": category, "name": name}}}})


class FakeAsana:
    """Asana's tasks endpoints, with Asana's {"errors": [{"message"}]} bodies."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.fail_next: list[int] = []
        self.posts = 0

    async def create(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.fail_next:
            return web.json_response({"errors": [{"message": "Rate limit enforced"}]}, status=self.fail_next.pop(0),
                                     headers={"Retry-After": "3"})
        if request.headers.get("Authorization") != "Bearer asana-pat":
            return web.json_response({"errors": [{"message": "Not Authorized"}]}, status=401)
        data = (await request.json()).get("data")
        if not isinstance(data, dict):
            return web.json_response({"errors": [{"message": "data: Missing input"}]}, status=400)
        if not (data.get("projects") or data.get("workspace") or data.get("parent")):
            return web.json_response({"errors": [{"message": "You should specify one of workspace, parent, "
                                                             "projects"}]}, status=400)
        if any(p != "1201" for p in data.get("projects") or []):
            return web.json_response({"errors": [{"message": "projects: Not a recognized ID: "
                                                             f"{data['projects'][0]}"}]}, status=400)
        gid = str(1209000000000000 + len(self.tasks))
        task = {"gid": gid, "resource_type": "task", "name": data.get("name", ""), "notes": data.get("notes", ""),
                "completed": False, "permalink_url": f"https://app.asana.com/0/1201/{gid}"}
        self.tasks[gid] = task
        return web.json_response({"data": task}, status=201)

    async def get(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer asana-pat":
            return web.json_response({"errors": [{"message": "Not Authorized"}]}, status=401)
        task = self.tasks.get(request.match_info["gid"])
        if task is None:
            return web.json_response({"errors": [{"message": "task: Unknown object"}]}, status=404)
        fields = request.query.get("opt_fields", "").split(",")
        return web.json_response({"data": {"gid": task["gid"], **{f: task[f] for f in fields if f in task}}})


@pytest.fixture
async def jira(aiohttp_server):
    fake = FakeJira()
    app = web.Application()
    app.router.add_post("/rest/api/2/issue", fake.create)
    app.router.add_get("/rest/api/2/issue/{key}", fake.get)
    server = await aiohttp_server(app)
    client = JiraTasks(str(server.make_url("")), EMAIL, TOKEN, "MKT", policy=FAST, sleep=Sleeps())
    yield fake, client
    await client.close()


@pytest.fixture
async def asana(aiohttp_server):
    fake = FakeAsana()
    app = web.Application()
    app.router.add_post("/api/1.0/tasks", fake.create)
    app.router.add_get("/api/1.0/tasks/{gid}", fake.get)
    server = await aiohttp_server(app)
    client = AsanaTasks(str(server.make_url("")), "asana-pat", "1201", policy=FAST, sleep=Sleeps())
    yield fake, client
    await client.close()


async def test_jira_issue_is_created_with_the_right_fields(jira):
    fake, client = jira
    link = await client.create("Review summer fares email", "Check the Lisbon–Funchal subject line.",
                               ["campaign", "summer sale"])
    assert link.tool == "jira" and link.key == "MKT-1" and link.id == "10000"
    assert link.url == f"{client.base_url}/browse/MKT-1"
    assert fake.issues["MKT-1"] == {"project": {"key": "MKT"}, "summary": "Review summer fares email",
                                    "description": "Check the Lisbon–Funchal subject line.",
                                    "issuetype": {"name": "Task"}, "labels": ["campaign", "summer-sale"]}


async def test_jira_status_follows_the_status_category(jira):
    fake, client = jira
    link = await client.create("Creative for Porto route", "", [])
    assert await client.status(link) == TaskStatus("open", "To Do")
    fake.statuses[link.key] = ("In Review", "indeterminate")
    assert await client.status(link) == TaskStatus("in_progress", "In Review")
    fake.statuses[link.key] = ("Shipped", "done")
    assert await client.status(link) == TaskStatus("done", "Shipped")


async def test_jira_missing_summary_is_refused_once_with_jiras_words(jira):
    fake, client = jira
    with pytest.raises(IntegrationError) as caught:
        await client.create("", "no title", [])
    assert fake.posts == 1 and caught.value.status == 400
    assert "summary: You must specify a summary of the issue." in str(caught.value)


async def test_jira_wrong_token_is_not_retried(aiohttp_server, jira):
    fake, good = jira
    bad = JiraTasks(good.base_url, EMAIL, "wrong-token", "MKT", policy=FAST)
    try:
        with pytest.raises(IntegrationError) as caught:
            await bad.create("x", "y", [])
    finally:
        await bad.close()
    assert caught.value.status == 401 and "must be authenticated" in caught.value.message and fake.posts == 1


async def test_jira_503_then_created_once(jira):
    fake, client = jira
    fake.fail_next = [503]
    outcomes: list[str] = []
    client.on_attempt = lambda tool, outcome: outcomes.append(f"{tool}:{outcome}")
    link = await client.create("Retry me", "", [])
    assert link.key == "MKT-1" and len(fake.issues) == 1 and fake.posts == 2
    assert outcomes == ["jira:retry", "jira:ok"]


async def test_jira_unknown_issue_says_so(jira):
    _, client = jira
    with pytest.raises(IntegrationError) as caught:
        await client.status(TaskLink("jira", "1", "MKT-99", ""))
    assert caught.value.status == 404 and "Issue does not exist" in caught.value.message


@pytest.mark.parametrize("issue_type", ["Story", None], ids=["story", "default-task"])
async def test_the_configured_issue_type_reaches_jira(jira, issue_type):
    """integrations.jira_issue_type, from the environment through the app's wiring, is the created issue's
    fields.issuetype.name (unset: "Task", as before)."""
    fake, client = jira
    env = {"TASK_TOOL": "jira", "JIRA_URL": client.base_url, "JIRA_EMAIL": EMAIL, "JIRA_API_TOKEN": TOKEN,
           "JIRA_PROJECT": "MKT", **({"JIRA_ISSUE_TYPE": issue_type} if issue_type else {})}
    tools = load_config(None, env={f"CONTRAIL__INTEGRATIONS__{k}": v for k, v in env.items()}).integrations
    tracker = task_tracker(tools, FAST, lambda tool, outcome: None)
    assert tracker is not None
    try:
        link = await tracker.create("Storyboard the autumn video", "Three scenes.", ["campaign"])
    finally:
        await tracker.close()
    assert link.key == "MKT-1"
    [body] = fake.bodies
    assert body["fields"]["issuetype"] == {"name": issue_type or "Task"}
    assert body["fields"]["project"] == {"key": "MKT"}


async def test_asana_task_is_created_in_the_project_and_read_back(asana):
    fake, client = asana
    link = await client.create("Upload autumn banners", "Sizes: 300x250, 728x90", ["campaign", "autumn"])
    task = fake.tasks[link.id]
    assert task["name"] == "Upload autumn banners"
    assert task["notes"] == "Sizes: 300x250, 728x90\n\nLabels: campaign, autumn"
    assert link == TaskLink("asana", link.id, link.id, f"https://app.asana.com/0/1201/{link.id}")
    assert await client.status(link) == TaskStatus("open", "incomplete")
    task["completed"] = True
    assert await client.status(link) == TaskStatus("done", "completed")


async def test_asana_429_waits_for_retry_after(asana):
    fake, client = asana
    fake.fail_next = [429]
    await client.create("Throttled", "", [])
    assert fake.posts == 2 and client._sleep.waits == [3.0]


async def test_asana_unknown_project_is_refused_with_asanas_words(asana):
    fake, client = asana
    client.gid = "9999"
    with pytest.raises(IntegrationError) as caught:
        await client.create("Lost", "", [])
    assert caught.value.status == 400 and "projects: Not a recognized ID: 9999" in caught.value.message
    assert fake.posts == 1


async def test_asana_workspace_task_and_bad_token(asana):
    fake, client = asana
    workspace = AsanaTasks(client.base_url, "asana-pat", "77", workspace=True, policy=FAST)
    bad = AsanaTasks(client.base_url, "stale", "1201", policy=FAST)
    try:
        link = await workspace.create("In the workspace", "", [])
        assert link.id in fake.tasks
        with pytest.raises(IntegrationError) as caught:
            await bad.create("x", "", [])
        assert caught.value.status == 401 and "Not Authorized" in caught.value.message
    finally:
        await workspace.close()
        await bad.close()
