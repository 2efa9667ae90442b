"""The review-task sync against a loopback Jira, however many tasks pile up: Contrail never closes the Jira issues of
finished reviews, so the sync stops polling a task once its review has ended in Contrail (closed), gives up on one
the tool would not open after MAX_ATTEMPTS (given_up), and takes the tasks it synced longest ago first. A pass takes
a few tasks here (SYNC_BATCH, 500 in production) so that a few campaigns fill it."""

from __future__ import annotations

import pytest

from app.campaigns import integrations
from app.campaigns.integrations import MAX_ATTEMPTS
from app.main import PLATFORM
from tests.integration.campaigns import test_team_tools
from tests.integration.campaigns.test_team_tools import CREATIVE, step

team = test_team_tools.team  # the fixture: the app, a loopback Jira and AEM, and the ReviewTasks under test


async def in_review(client, keys, tasks, campaign_id: str) -> None:
    """A campaign created by the author and sent for review; its task's opening is over (opened or failed)."""
    body = {"id": campaign_id, "name": campaign_id.title(), "advertiser_domain": "contrail.example",
            "bid_cap_micros": 4_000_000, "daily_budget_micros": 100_000_000, "creatives": [CREATIVE]}
    resp = await client.post("/v1/admin/campaigns", json=body, headers=keys["author"])
    assert resp.status == 201, await resp.text()
    await step(client, keys["author"], campaign_id, "submit")
    await tasks.idle()


async def review_task(client, keys, campaign_id: str) -> dict:
    """The campaign's newest review task, as an admin sees it on the campaign."""
    resp = await client.get(f"/v1/admin/campaigns/{campaign_id}", headers=keys["ana"])
    assert resp.status == 200, await resp.text()
    return (await resp.json())["review_task"]


async def test_reviews_ended_in_contrail_stop_being_polled_and_new_reviews_get_their_turn(team, clock,
                                                                                          monkeypatch):
    client, keys, jira, _, tasks, _ = team
    monkeypatch.setattr(integrations, "SYNC_BATCH", 3)
    # Three older reviews, decided in Contrail: their Jira issues (MKT-1..3) stay "To Do" for good.
    for campaign_id in ("alpha", "bravo", "charlie"):
        await in_review(client, keys, tasks, campaign_id)
        await step(client, keys["ana"], campaign_id, "approve" if campaign_id != "charlie" else "reject")
        clock.advance(60)
    jira.fail_next = [503, 503]  # Jira is down when "late" goes for review: its task is not opened
    await in_review(client, keys, tasks, "late")
    clock.advance(60)
    await in_review(client, keys, tasks, "fresh")  # MKT-4, which the approver then picks up in Jira
    jira.statuses["MKT-4"] = ("In Review", "indeterminate")
    clock.advance(60)
    assert (await review_task(client, keys, "late"))["status"] == "failed"

    for _ in range(2):
        await tasks.sync()
        clock.advance(60)
    assert (await review_task(client, keys, "fresh"))["status"] == "in_progress"
    late = await review_task(client, keys, "late")
    assert (late["status"], late["task_key"], late["attempts"]) == ("open", "MKT-5", 2)   # Jira is back: opened
    for campaign_id in ("alpha", "bravo", "charlie"):
        ended = await review_task(client, keys, campaign_id)
        assert (ended["status"], ended["url"].rsplit("/", 1)[1]) == ("closed", ended["task_key"])
    assert not {"MKT-1", "MKT-2", "MKT-3"} & set(jira.reads)  # a review that has ended is not asked about

    jira.reads.clear()
    assert await tasks.sync() == 2 and sorted(jira.reads) == ["MKT-4", "MKT-5"]  # only reviews still open


async def test_a_pass_takes_the_tasks_synced_longest_ago_so_an_unreadable_issue_does_not_hold_the_rest_up(
        team, clock, monkeypatch):
    client, keys, jira, _, tasks, _ = team
    monkeypatch.setattr(integrations, "SYNC_BATCH", 1)
    for campaign_id in ("c0", "c1", "c2"):  # three reviews under way: MKT-1..3
        await in_review(client, keys, tasks, campaign_id)
        clock.advance(60)
    del jira.statuses["MKT-1"]  # deleted in Jira: every read of it is a 404
    jira.statuses["MKT-3"] = ("In Review", "indeterminate")

    for _ in range(3):
        assert await tasks.sync() == 1
        clock.advance(60)
    assert jira.reads == ["MKT-1", "MKT-2", "MKT-3"]  # each in turn, the failing one included once
    assert (await review_task(client, keys, "c2"))["status"] == "in_progress"
    failing = await review_task(client, keys, "c0")
    assert failing["status"] == "open" and "404" in failing["error"]  # what it last was, and why it is not synced
    await tasks.sync()
    assert jira.reads[-1] == "MKT-1"  # and then its turn comes again


async def test_a_change_review_is_polled_until_the_changes_are_decided_and_superseded_tasks_are_not(team, clock):
    client, keys, jira, _, tasks, _ = team
    _, ben = await client.app[PLATFORM].api_keys.create("ben", "admin")
    ben_key = {"X-Api-Key": ben}
    await in_review(client, keys, tasks, "spring")  # MKT-1
    clock.advance(60)
    await step(client, keys["ana"], "spring", "approve")
    resp = await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 200_000_000},
                              headers=keys["author"])
    assert resp.status == 200, await resp.text()
    await tasks.idle()  # MKT-2: the change goes for review
    clock.advance(60)
    await tasks.sync()
    assert jira.reads == ["MKT-2"]  # the first review is over: its issue is left alone

    resp = await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 300_000_000},
                              headers=ben_key)
    assert resp.status == 200, await resp.text()
    await tasks.idle()  # MKT-3: both changes, for review together
    clock.advance(60)
    await tasks.sync()
    assert jira.reads == ["MKT-2", "MKT-3"]  # MKT-2 stood for changes now under review in MKT-3

    await step(client, keys["ana"], "spring", "approve")
    clock.advance(60)
    await tasks.sync()
    assert jira.reads == ["MKT-2", "MKT-3"]
    listed = await (await client.get("/v1/admin/campaigns/spring/tasks", headers=keys["ana"])).json()
    assert [(t["task_key"], t["status"]) for t in listed["items"]] == [("MKT-1", "closed"), ("MKT-2", "closed"),
                                                                       ("MKT-3", "closed")]
    assert await tasks.sync() == 0


@pytest.mark.parametrize("refusal", [400, 500])
async def test_a_task_the_tool_would_not_open_is_given_up_after_its_attempts(team, clock, refusal):
    client, keys, jira, _, tasks, _ = team
    jira.fail_next = [refusal] * 2 * MAX_ATTEMPTS  # refused every time (a 5xx is tried twice per attempt)
    await in_review(client, keys, tasks, "spring")
    for _ in range(MAX_ATTEMPTS - 1):
        clock.advance(60)
        await tasks.sync()
    failed = await review_task(client, keys, "spring")
    assert (failed["status"], failed["attempts"], jira.issues) == ("failed", MAX_ATTEMPTS, {})
    posts = jira.posts

    jira.fail_next = []  # Jira would take it now, but the attempts are used up
    clock.advance(60)
    assert await tasks.sync() == 1
    given_up = await review_task(client, keys, "spring")
    assert (given_up["status"], given_up["attempts"], given_up["task_key"]) == ("given_up", MAX_ATTEMPTS, "")
    assert str(refusal) in given_up["error"]  # why the last attempt failed
    assert await tasks.sync() == 0 and jira.posts == posts and jira.issues == {}
