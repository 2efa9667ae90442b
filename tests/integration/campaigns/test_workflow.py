"""The campaign workflow against the real app: nothing bids before approval; rules decide how many approvers; the
creator cannot approve; every step is durable, in the history, audited and on the bus; edits of an approved
campaign wait for approval while the approved version runs; the scheduler starts and completes campaigns on the
clock, and a restart takes no step twice."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from app.campaigns.events import CampaignChanged
from app.main import PLATFORM, create_app
from state.loyalty import Member
from tests.conftest import make_config
from tests.integration.campaigns.test_policies import metric

CREATIVE = {"id": "c1", "format": "banner", "markup": "<b>fly</b>", "w": 300, "h": 250}
BID = {"id": "r1", "imp": [{"id": "1", "bidfloor": 0.1, "banner": {"w": 300, "h": 250}}],
       "site": {"id": "s", "domain": "news.example"}, "user": {"id": "u1"}, "tmax": 200}


def new_campaign(**kw) -> dict:
    body = {"id": "spring", "name": "Spring sale", "advertiser_domain": "contrail.example",
            "bid_cap_micros": 4_000_000, "daily_budget_micros": 100_000_000, "creatives": [CREATIVE]}
    body.update(kw)
    return body


@pytest.fixture
async def team(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    keys = {}
    for name, role in (("author", "admin"), ("ana", "admin"), ("ben", "admin"), ("exchange", "exchange"),
                       ("partner", "partner")):
        made, key = await platform.api_keys.create(name, role)
        keys[name] = {"X-Api-Key": key}
        keys[f"{name}_scope"] = f"api_key:{made.id}"
    seen: list[CampaignChanged] = []
    platform.bus.subscribe(CampaignChanged, seen.append)
    return client, keys, seen


async def step(client, who, campaign_id, action, status=200, **body):
    resp = await client.post(f"/v1/admin/campaigns/{campaign_id}/{action}", json=body or None, headers=who)
    payload = await resp.json()
    assert resp.status == status, payload
    return payload


async def bids(client, keys) -> bool:
    resp = await client.post("/v1/bid", json=BID, headers=keys["exchange"])
    assert resp.status in (200, 204)
    return resp.status == 200


async def test_a_campaign_goes_from_draft_to_archived_and_bids_only_while_live(team, clock):
    client, keys, seen = team
    created = await client.post("/v1/admin/campaigns", json=new_campaign(), headers=keys["author"])
    assert created.status == 201
    assert (await created.json())["state"] == "draft"
    assert not await bids(client, keys)  # a draft never bids

    submitted = await step(client, keys["author"], "spring", "submit", comment="for the spring routes")
    assert submitted["state"] == "in_review" and submitted["approval_rule"] == "standard"
    assert submitted["approvals_required"] == 1
    assert not await bids(client, keys)
    approved = await step(client, keys["ana"], "spring", "approve", comment="looks good")
    assert approved["state"] == "approved" and approved["approvals"] == [keys["ana_scope"]]
    assert approved["created_by"] == approved["edited_by"] == keys["author_scope"]
    assert not await bids(client, keys)  # approved, but it has no start: it waits to be scheduled

    end = clock.now() + 3600
    live = await step(client, keys["ana"], "spring", "schedule", starts_at=clock.now() - 1, ends_at=end)
    assert live["state"] == "live"  # a start already past goes live at once
    assert await bids(client, keys)
    assert (await step(client, keys["ana"], "spring", "pause"))["state"] == "paused"
    assert not await bids(client, keys)  # the change is immediate
    assert (await step(client, keys["ana"], "spring", "resume"))["state"] == "live"
    assert await bids(client, keys)

    clock.advance(3601)
    assert not await bids(client, keys)  # its end has come: no bid, before the scheduler records it completed
    assert await client.app[PLATFORM].workflow.tick() == 1
    got = await (await client.get("/v1/admin/campaigns/spring", headers=keys["ana"])).json()
    assert got["state"] == "completed" and got["review_task"] is None   # no task tool is configured here
    assert not await bids(client, keys)
    assert (await step(client, keys["ben"], "spring", "archive", comment="done"))["state"] == "archived"

    history = await (await client.get("/v1/admin/campaigns/spring/history", headers=keys["ana"])).json()
    moves = [(h["action"], h["from_state"], h["to_state"]) for h in history["items"]]
    assert moves == [("create", "", "draft"), ("submit", "draft", "in_review"), ("approve", "in_review", "approved"),
                     ("schedule", "approved", "scheduled"), ("start", "scheduled", "live"),
                     ("pause", "live", "paused"), ("resume", "paused", "live"), ("complete", "live", "completed"),
                     ("archive", "completed", "archived")]
    assert history["items"][1]["comment"] == "for the spring routes"
    assert history["items"][4]["actor"] == "scheduler" and history["items"][2]["actor"] == keys["ana_scope"]
    assert [(e.action, e.from_state, e.to_state) for e in seen] == moves  # each step on the bus
    audit = await (await client.get("/v1/admin/audit", headers=keys["ana"])).json()
    steps = {e["action"]: e for e in audit["items"] if e["target"] == "spring"}
    assert (steps["campaign.approve"]["actor"], steps["campaign.approve"]["details"]) == (
        keys["ana_scope"], {"from_state": "in_review", "to_state": "approved", "comment": "looks good"})
    assert steps["campaign.archive"]["actor"] == keys["ben_scope"]
    assert steps["campaign.archive"]["details"] == {"from_state": "completed", "to_state": "archived",
                                                    "comment": "done"}
    assert steps["campaign.submit"]["details"]["rule"] == "standard"


async def test_steps_that_the_workflow_does_not_allow_are_409_naming_the_state(team):
    client, keys, _ = team
    await client.post("/v1/admin/campaigns", json=new_campaign(), headers=keys["author"])
    for action in ("approve", "reject", "schedule", "pause", "resume", "archive"):
        refused = await step(client, keys["ana"], "spring", action, status=409)
        assert refused["error"]["message"] == f"cannot {action} campaign spring: it is draft"
        assert refused["error"]["details"] == {"state": "draft"}
    await step(client, keys["author"], "spring", "submit")
    refused = await step(client, keys["author"], "spring", "submit", status=409)
    assert "it is in_review" in refused["error"]["message"]
    edit = await client.patch("/v1/admin/campaigns/spring", json={"name": "x"}, headers=keys["author"])
    assert edit.status == 409 and "in_review" in (await edit.json())["error"]["message"]
    assert (await step(client, keys["ana"], "nope", "submit", status=404))["error"]["code"]
    assert (await client.post("/v1/admin/campaigns/spring/approve", headers=keys["partner"])).status == 403
    bad = await client.post("/v1/admin/campaigns/spring/approve", data=b"{", headers=keys["ana"])
    assert bad.status == 400 and "malformed JSON" in (await bad.json())["error"]["message"]
    bad = await client.post("/v1/admin/campaigns/spring/approve", json={"comment": "x" * 2001}, headers=keys["ana"])
    assert bad.status == 400 and "comment" in (await bad.json())["error"]["message"]
    old = await client.patch("/v1/admin/campaigns/spring", json={"status": "paused"}, headers=keys["ana"])
    assert old.status == 400 and "status" in (await old.json())["error"]["message"]


async def test_the_list_pages_by_id_and_filters_by_state(team):
    client, keys, _ = team
    for n in range(5):
        await client.post("/v1/admin/campaigns", json=new_campaign(id=f"c{n}"), headers=keys["author"])
    await step(client, keys["author"], "c3", "submit")
    seen, after = [], None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = await (await client.get("/v1/admin/campaigns", params=params, headers=keys["ana"])).json()
        assert len(page["items"]) <= 2
        seen += [c["id"] for c in page["items"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert seen == ["c0", "c1", "c2", "c3", "c4"]
    review = await (await client.get("/v1/admin/campaigns", params={"state": "in_review"}, headers=keys["ana"])).json()
    assert [c["id"] for c in review["items"]] == ["c3"] and review["next_cursor"] is None
    for params, field in (({"state": "bogus"}, "state"), ({"limit": "-1"}, "limit"), ({"colour": "red"}, "colour"),
                          ({"after": "!!"}, "after")):
        bad = await client.get("/v1/admin/campaigns", params=params, headers=keys["ana"])
        assert bad.status == 400 and field in (await bad.json())["error"]["message"], params


async def test_no_one_who_edited_the_version_under_review_approves_it_not_only_its_last_editor(team):
    client, keys, _ = team
    await client.post("/v1/admin/campaigns", json=new_campaign(), headers=keys["author"])
    raised = await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 900_000_000},
                                headers=keys["ana"])
    assert raised.status == 200
    await step(client, keys["author"], "spring", "submit")
    rejected = await step(client, keys["ben"], "spring", "reject", comment="the copy, not the budget")
    assert rejected["editors"] == [keys["ana_scope"]]  # still her budget in it
    renamed = await client.patch("/v1/admin/campaigns/spring", json={"name": "Spring sun"}, headers=keys["author"])
    assert (await renamed.json())["edited_by"] == keys["author_scope"]  # ana is no longer the last editor
    await step(client, keys["author"], "spring", "submit")
    refused = await step(client, keys["ana"], "spring", "approve", status=403)  # her budget is under review
    assert "created or edited" in refused["error"]["message"]
    approved = await step(client, keys["ben"], "spring", "approve")
    assert (approved["state"], approved["editors"]) == ("approved", [])
    # The approved version's editors are done with: a later change is reviewed with its own editors.
    await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 200_000_000},
                       headers=keys["author"])
    assert (await step(client, keys["ana"], "spring", "approve"))["pending"] is None


async def test_approval_rules_approvers_and_rejection(team):
    client, keys, _ = team
    # High budget: two approvers; neither the creator nor the last editor may be one of them.
    await client.post("/v1/admin/campaigns", json=new_campaign(id="big", daily_budget_micros=5_000_000_000),
                      headers=keys["author"])
    review = await step(client, keys["author"], "big", "submit")
    assert (review["approval_rule"], review["approvals_required"]) == ("high_budget", 2)
    own = await step(client, keys["author"], "big", "approve", status=403)
    assert "cannot approve" in own["error"]["message"]
    once = await step(client, keys["ana"], "big", "approve")
    assert once["state"] == "in_review" and len(once["approvals"]) == 1
    twice = await step(client, keys["ana"], "big", "approve", status=409)
    assert "already approved" in twice["error"]["message"]
    assert (await step(client, keys["ben"], "big", "approve"))["state"] == "approved"

    # A regulated channel: two approvers; one rejection rejects; an edit takes it back to draft to resubmit.
    await client.post("/v1/admin/campaigns", json=new_campaign(id="texts", channels=["sms"], creatives=[]),
                      headers=keys["author"])
    review = await step(client, keys["author"], "texts", "submit")
    assert (review["approval_rule"], review["approvals_required"]) == ("regulated_channel", 2)
    await step(client, keys["ana"], "texts", "approve")
    rejected = await step(client, keys["ben"], "texts", "reject", comment="wording")
    assert rejected["state"] == "rejected" and rejected["approvals"] == []
    fixed = await client.patch("/v1/admin/campaigns/texts", json={"name": "Better"}, headers=keys["ana"])
    assert (await fixed.json())["state"] == "draft"
    await step(client, keys["ana"], "texts", "submit")
    refused = await step(client, keys["ana"], "texts", "approve", status=403)  # ana edited it last
    assert "created or edited" in refused["error"]["message"]
    queue = await (await client.get("/v1/admin/approvals", headers=keys["ben"])).json()
    assert [c["id"] for c in queue["items"]] == ["texts"]
    history = await (await client.get("/v1/admin/campaigns/texts/history", headers=keys["ben"])).json()
    assert [(h["action"], h["to_state"]) for h in history["items"]][-4:] == [
        ("approve", "in_review"), ("reject", "rejected"), ("edit", "draft"), ("submit", "in_review")]
    audit = await (await client.get("/v1/admin/audit", headers=keys["ben"])).json()
    edited = next(e for e in audit["items"] if e["target"] == "texts" and e["action"] == "campaign.edit")
    assert edited["details"] == {"from_state": "rejected", "to_state": "draft", "comment": "", "name": "Better"}

    # A display campaign with no creative cannot be submitted: nothing could be shown.
    await client.post("/v1/admin/campaigns", json=new_campaign(id="bare", creatives=[]), headers=keys["author"])
    bare = await step(client, keys["author"], "bare", "submit", status=400)
    assert "no creative" in bare["error"]["message"]

    # A channel Contrail does not know is refused, so a spelling can't slip past the regulated-channel rule.
    for channels in (["SMS"], [" sms"], ["carrier-pigeon"]):
        for resp in (await client.post("/v1/admin/campaigns", json=new_campaign(id="odd", channels=channels),
                                       headers=keys["author"]),
                     await client.patch("/v1/admin/campaigns/texts", json={"channels": channels},
                                        headers=keys["author"])):
            assert resp.status == 400, channels
            message = (await resp.json())["error"]["message"]
            assert f"Invalid enum value '{channels[0]}' at channels[0]" in message, message
    assert (await client.get("/v1/admin/campaigns/odd", headers=keys["author"])).status == 404


async def test_edits_of_a_live_campaign_wait_for_approval_while_the_approved_version_runs(team, clock):
    client, keys, _ = team
    await client.post("/v1/admin/campaigns", json=new_campaign(), headers=keys["author"])
    await step(client, keys["author"], "spring", "submit")
    await step(client, keys["ana"], "spring", "approve")
    await step(client, keys["ana"], "spring", "schedule")
    budget = 100_000_000
    patched = await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 9_000_000_000,
                                                                     "name": "Spring sale, extended"},
                                 headers=keys["author"])
    body = await patched.json()
    assert body["state"] == "live" and body["name"] == "Spring sale, extended"  # a name needs no approval
    assert body["daily_budget_micros"] == budget  # the approved budget still runs ...
    assert body["pending"]["daily_budget_micros"] == 9_000_000_000  # ... the new one waits, as a high budget
    assert (body["pending"]["rule"], body["pending"]["approvals_required"]) == ("high_budget", 2)
    assert await bids(client, keys)
    spend = await (await client.get("/v1/admin/spend", headers=keys["ana"])).json()
    assert next(i for i in spend["items"] if i["campaign_id"] == "spring")["daily_budget_micros"] == budget
    assert (await step(client, keys["author"], "spring", "approve", status=403))  # the editor cannot
    await step(client, keys["ana"], "spring", "approve")
    applied = await step(client, keys["ben"], "spring", "approve")
    assert applied["daily_budget_micros"] == 9_000_000_000 and applied["pending"] is None
    assert applied["state"] == "live"

    # Changes by two admins wait together: neither may approve them, nor may whoever edited the campaign last.
    await client.patch("/v1/admin/campaigns/spring", json={"bid_cap_micros": 2_000_000}, headers=keys["author"])
    await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 8_000_000_000},
                       headers=keys["ana"])
    await client.patch("/v1/admin/campaigns/spring", json={"name": "Spring, renamed"}, headers=keys["ben"])
    for who in ("author", "ana", "ben"):
        refused = await step(client, keys[who], "spring", "approve", status=403)
        assert "made the changes waiting for approval" in refused["error"]["message"], who
    await step(client, keys["ana"], "spring", "reject", comment="start again")

    added = await client.post("/v1/admin/campaigns/spring/creatives", headers=keys["author"],
                              json={"id": "c2", "format": "banner", "markup": "<b>2</b>", "w": 728, "h": 90})
    assert [c["id"] for c in (await added.json())["pending"]["creatives"]] == ["c1", "c2"]
    dropped = await step(client, keys["ana"], "spring", "reject", comment="not this one")
    assert dropped["pending"] is None and [c["id"] for c in dropped["creatives"]] == ["c1"]
    assert dropped["state"] == "live" and await bids(client, keys)
    nothing = await step(client, keys["ana"], "spring", "approve", status=409)
    assert "nothing is waiting for approval" in nothing["error"]["message"]


async def author_and_approver(aiohttp_client, config, clock):
    """A server on `config`'s files, and the API-key headers of two admins: one authors, the other approves."""
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    _, author = await platform.api_keys.create("author", "admin")
    _, approver = await platform.api_keys.create("ana", "admin")
    return client, platform, {"X-Api-Key": author}, {"X-Api-Key": approver}


async def test_the_scheduler_survives_a_restart_without_taking_a_step_twice(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client, platform, author, approver = await author_and_approver(aiohttp_client, config, clock)
    start = clock.now() + 600
    await client.post("/v1/admin/campaigns", json=new_campaign(starts_at=start, ends_at=start + 600),
                      headers=author)
    await step(client, author, "spring", "submit")
    await step(client, approver, "spring", "approve")
    assert await platform.workflow.tick() == 0  # approved; its start has not come
    await client.close()

    clock.advance(1200)  # both its start and its end passed while the server was down
    again = await aiohttp_client(create_app(config, clock=clock))
    workflow = again.app[PLATFORM].workflow
    assert await workflow.tick() == 2  # started, then completed: in that order, once each
    assert await workflow.tick() == 0
    steps = [(h.action, h.to_state) for h in await workflow.history("spring")]
    assert steps[-2:] == [("start", "live"), ("complete", "completed")]
    await again.close()
    third = await aiohttp_client(create_app(config, clock=clock))
    assert await third.app[PLATFORM].workflow.tick() == 0
    assert [h.action for h in await third.app[PLATFORM].workflow.history("spring")].count("start") == 1


async def test_campaigns_stored_before_the_workflow_migrate_active_to_live(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    if config.storage.backend != "sqlite":
        pytest.skip("a SQLite file from before the workflow (PostgreSQL databases start at the workflow)")
    client = await aiohttp_client(create_app(config, clock=clock))
    await client.close()
    db = sqlite3.connect(config.data_path / "contrail.db")
    old = ('{"id":"%s","name":"Old","advertiser_domain":"contrail.example","bid_cap_micros":4000000,'
           '"daily_budget_micros":100000000,"status":"%s","creatives":[{"id":"c1","format":"banner",'
           '"markup":"<b>","w":300,"h":250}]}')
    with db:  # as a database from before migration 13 held them
        db.execute("DROP TABLE campaign_history")
        db.execute("DELETE FROM schema_migrations WHERE version = 13")
        for campaign_id, status in (("was-active", "active"), ("was-paused", "paused")):
            db.execute("INSERT INTO campaigns(id, body, updated_at) VALUES (?,?,?)",
                       (campaign_id, old % (campaign_id, status), 0.0))
    db.close()
    again = await aiohttp_client(create_app(config, clock=clock))
    campaigns = again.app[PLATFORM].campaigns
    assert campaigns.get("was-active").state == "live" and campaigns.get("was-paused").state == "paused"
    _, key = await again.app[PLATFORM].api_keys.create("exchange", "exchange")
    resp = await again.post("/v1/bid", json=BID, headers={"X-Api-Key": key})
    assert resp.status == 200 and "was-active" in await resp.text()


async def test_only_a_live_campaign_activates(team):
    client, keys, _ = team
    platform = client.app[PLATFORM]
    await platform.loyalty.put_member(Member("m1", preferred_channel="in_app"))
    await client.post("/v1/admin/campaigns", json=new_campaign(channels=["in_app"]), headers=keys["author"])
    message = {"user_id": "m1", "subject": "Spring", "text": "Fly in spring", "channel": "in_app",
               "campaign_id": "spring"}
    refused = await client.post("/v1/channels/activate", json=message, headers=keys["ana"])
    body = await refused.json()
    assert refused.status == 409 and body["error"]["details"] == {"state": "draft"}
    assert "only live campaigns activate" in body["error"]["message"]
    await step(client, keys["author"], "spring", "submit")
    await step(client, keys["ana"], "spring", "approve")
    await step(client, keys["ana"], "spring", "schedule")
    sent = await client.post("/v1/channels/activate", json=message, headers=keys["ana"])
    assert sent.status == 201 and (await sent.json())["status"] == "delivered"
    await step(client, keys["ana"], "spring", "pause")
    assert (await client.post("/v1/channels/activate", json=message, headers=keys["ana"])).status == 409
    unknown = await client.post("/v1/channels/activate", json={**message, "campaign_id": "nope"}, headers=keys["ana"])
    assert unknown.status == 404
    assert len(await platform.inapp.inbox("m1", 10, None)) == 1


async def test_a_campaign_activates_only_by_the_channels_it_was_approved_for(team):
    """The approval rule counted the campaign's channels (SMS needs two approvers): an in-app campaign cannot send
    an SMS, and without a channel named the cascade skips the channels it was not approved for."""
    client, keys, _ = team
    platform = client.app[PLATFORM]
    await platform.loyalty.put_member(Member("m1", preferred_channel="email", email="m1@example.com",
                                             phone="+351912345678", push_token="app-1"))  # has the app
    await client.post("/v1/admin/campaigns", json=new_campaign(channels=["display", "in_app"]), headers=keys["author"])
    await step(client, keys["author"], "spring", "submit")
    assert (await step(client, keys["ana"], "spring", "approve"))["approval_rule"] == "standard"
    await step(client, keys["ana"], "spring", "schedule")
    message = {"user_id": "m1", "subject": "Spring", "text": "Fly in spring", "campaign_id": "spring"}
    for channel in ("sms", "email"):
        refused = await client.post("/v1/channels/activate", json={**message, "channel": channel}, headers=keys["ana"])
        body = await refused.json()
        assert refused.status == 409 and body["error"]["details"] == {"field": "channel", "channels": ["in_app"]}
        assert f"by {channel}: it was approved for in_app" in body["error"]["message"]
    sent = await client.post("/v1/channels/activate", json=message, headers=keys["ana"])
    assert sent.status == 201 and (await sent.json())["channel"] == "in_app"   # not email, the member's preferred
    await client.post("/v1/admin/campaigns", json=new_campaign(id="banner-only", channels=["display"]),
                      headers=keys["author"])
    await step(client, keys["author"], "banner-only", "submit")
    await step(client, keys["ana"], "banner-only", "approve")
    await step(client, keys["ana"], "banner-only", "schedule")
    none = await client.post("/v1/channels/activate", json={**message, "campaign_id": "banner-only"},
                             headers=keys["ana"])
    assert none.status == 409 and "no activation channel" in (await none.json())["error"]["message"]
    anyone = {k: v for k, v in message.items() if k != "campaign_id"}
    no_campaign = await client.post("/v1/channels/activate", json={**anyone, "channel": "email"}, headers=keys["ana"])
    assert no_campaign.status == 201   # a message of no campaign goes by any channel


async def test_a_campaign_past_its_end_neither_bids_nor_activates_before_the_scheduler_completes_it(team, clock):
    client, keys, _ = team
    platform = client.app[PLATFORM]
    await platform.loyalty.put_member(Member("m1", preferred_channel="in_app"))
    await client.post("/v1/admin/campaigns", json=new_campaign(channels=["in_app"]), headers=keys["author"])
    await step(client, keys["author"], "spring", "submit")
    await step(client, keys["ana"], "spring", "approve")
    await step(client, keys["ana"], "spring", "schedule", starts_at=clock.now() - 1, ends_at=clock.now() + 60)
    message = {"user_id": "m1", "subject": "Spring", "text": "Fly in spring", "channel": "in_app",
               "campaign_id": "spring"}
    assert await bids(client, keys)
    assert (await client.post("/v1/channels/activate", json=message, headers=keys["ana"])).status == 201
    clock.advance(60)  # exactly its end
    assert not await bids(client, keys)
    refused = await client.post("/v1/channels/activate", json=message, headers=keys["ana"])
    assert refused.status == 409 and (await refused.json())["error"]["details"] == {"state": "completed"}
    stored = await (await client.get("/v1/admin/campaigns/spring", headers=keys["ana"])).json()
    assert stored["state"] == "live"  # not yet recorded: the scheduler does that, once
    assert await platform.workflow.tick() == 1
    assert not await bids(client, keys)
    clock.advance(-30)  # a clock set back: completed is completed
    assert not await bids(client, keys)


async def test_archived_campaigns_leave_memory_and_stay_readable_across_a_restart(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client, platform, author, approver = await author_and_approver(aiohttp_client, config, clock)
    ids = ["a-old", "B-live", "c-old", "d-draft"]
    wide = {**CREATIVE, "w": 728, "h": 90}  # B-live never fits the 300x250 requests below: the archived ones bid
    for campaign_id in ids:
        body = new_campaign(id=campaign_id, **({"creatives": [wide]} if campaign_id == "B-live" else {}))
        assert (await client.post("/v1/admin/campaigns", json=body, headers=author)).status == 201
    for campaign_id in ids[:3]:
        await step(client, author, campaign_id, "submit")
        await step(client, approver, campaign_id, "approve")
        await step(client, approver, campaign_id, "schedule", starts_at=clock.now() - 1, ends_at=clock.now() + 60)
    policy = await client.put("/v1/admin/campaigns/a-old/policy", json={"kind": "thompson", "arms": "creatives"},
                              headers=approver)
    assert policy.status == 200
    signal = {"offer_id": "c1", "user_id": "u1", "signal_type": "clicked", "campaign_id": "a-old", "signal_id": "s1"}
    assert (await client.post("/v1/loyalty/reward-signal", json=signal, headers=approver)).status == 200
    assert await metric(client, "contrail_queue_depth", queue="campaigns_in_memory") == 4
    assert await metric(client, "contrail_queue_depth", queue="policies_in_memory") == 1
    _, exchange = await platform.api_keys.create("exchange", "exchange")
    for n in range(12):  # traffic while they are live: the reports keep it after they are archived
        bid = {**BID, "id": f"r{n}", "user": {"id": f"u{n}"}}
        assert (await client.post("/v1/bid", json=bid, headers={"X-Api-Key": exchange})).status == 200
    await platform.event_log.flush()
    await platform.reports.roll_up()
    clock.advance(61)
    await platform.workflow.tick()
    for campaign_id in ("a-old", "c-old"):
        assert (await step(client, approver, campaign_id, "archive"))["state"] == "archived"
    assert await metric(client, "contrail_queue_depth", queue="campaigns_in_memory") == 2
    assert await metric(client, "contrail_queue_depth", queue="policies_in_memory") == 0

    async def check(client) -> None:
        # Each archived campaign is read back from the store: the campaign, its history, report and policy.
        got = await client.get("/v1/admin/campaigns/a-old", headers=approver)
        assert got.status == 200 and (await got.json())["state"] == "archived"
        history = await (await client.get("/v1/admin/campaigns/a-old/history", headers=approver)).json()
        assert history["items"][-1]["action"] == "archive"
        report = await client.get("/v1/admin/campaigns/c-old/report", headers=approver)
        assert report.status == 200 and (await report.json())["state"] == "archived"
        # Every campaign with activity is in the reports of all campaigns, archived or not.
        everyone = await (await client.get("/v1/admin/campaigns/report", headers=approver)).json()
        bidders = {line["campaign_id"] for line in everyone["items"] if line["totals"]["bids"]}
        assert sum(line["totals"]["bids"] for line in everyone["items"]) == everyone["totals"]["bids"] == 12
        assert bidders and bidders <= {"a-old", "c-old"}
        assert "d-draft" in {line["campaign_id"] for line in everyone["items"]}
        export = await (await client.get("/v1/reports/campaigns.csv", headers=approver)).text()
        assert bidders == {row.split(",")[0] for row in export.splitlines()[1:]}
        arms = (await (await client.get("/v1/admin/campaigns/a-old/policy", headers=approver)).json())["posterior"]
        assert [(a["arm"], a["pulls"]) for a in arms] == [("c1", 1)]
        # The list pages through held and archived campaigns alike, by id.
        seen, after = [], None
        while True:
            params = {"limit": "1", **({"after": after} if after else {})}
            page = await (await client.get("/v1/admin/campaigns", params=params, headers=approver)).json()
            seen += [(c["id"], c["state"]) for c in page["items"]]
            after = page["next_cursor"]
            if after is None:
                break
        # By code point ("B" before "a"), on PostgreSQL too, whatever its collation says.
        assert seen == [("B-live", "completed"), ("a-old", "archived"), ("c-old", "archived"), ("d-draft", "draft")]
        archived = await (await client.get("/v1/admin/campaigns", params={"state": "archived"},
                                           headers=approver)).json()
        assert [c["id"] for c in archived["items"]] == ["a-old", "c-old"]
        held = await (await client.get("/v1/admin/campaigns", params={"archived": "false"}, headers=approver)).json()
        assert [c["id"] for c in held["items"]] == ["B-live", "d-draft"]  # memory alone, as the console asks
        nothing = await client.get("/v1/admin/campaigns", params={"archived": "false", "state": "archived"},
                                   headers=approver)
        assert nothing.status == 400 and (await nothing.json())["error"]["details"] == {"field": "archived"}
        # Nothing more happens to an archived campaign, and its id stays taken.
        for action in ("submit", "archive", "pause"):
            refused = await step(client, approver, "a-old", action, status=409)
            assert refused["error"]["details"] == {"state": "archived"}
        edit = await client.patch("/v1/admin/campaigns/a-old", json={"name": "again"}, headers=approver)
        assert edit.status == 409
        again = await client.post("/v1/admin/campaigns", json=new_campaign(id="a-old"), headers=author)
        assert again.status == 409
        activate = await client.post("/v1/channels/activate", headers=approver, json={
            "user_id": "m1", "subject": "Spring", "text": "Fly", "channel": "in_app", "campaign_id": "a-old"})
        assert activate.status == 409 and (await activate.json())["error"]["details"] == {"state": "archived"}
        reconfigure = await client.put("/v1/admin/campaigns/a-old/policy", json={"kind": "uniform",
                                                                                 "arms": "creatives"}, headers=approver)
        assert reconfigure.status == 409 and "archived" in (await reconfigure.json())["error"]["message"]

    await check(client)
    await client.close()
    restarted = await aiohttp_client(create_app(config, clock=clock))  # a start holds only those not archived
    assert await metric(restarted, "contrail_queue_depth", queue="campaigns_in_memory") == 2
    assert await metric(restarted, "contrail_queue_depth", queue="policies_in_memory") == 0
    await check(restarted)


async def test_two_creatives_added_at_once_both_land(aiohttp_client, tmp_path, clock):
    client, _, author, _ = await author_and_approver(aiohttp_client, make_config(tmp_path), clock)
    assert (await client.post("/v1/admin/campaigns", json=new_campaign(), headers=author)).status == 201
    added = await asyncio.gather(*(client.post("/v1/admin/campaigns/spring/creatives", headers=author,
                                               json={**CREATIVE, "id": f"c{n}"}) for n in (2, 3)))
    assert [r.status for r in added] == [201, 201]
    got = await (await client.get("/v1/admin/campaigns/spring", headers=author)).json()
    assert sorted(c["id"] for c in got["creatives"]) == ["c1", "c2", "c3"]


async def test_targeting_and_channels_of_a_live_campaign_wait_for_approval_too(team):
    client, keys, _ = team
    await client.post("/v1/admin/campaigns", json=new_campaign(), headers=keys["author"])
    await step(client, keys["author"], "spring", "submit")
    await step(client, keys["ana"], "spring", "approve")
    live = await step(client, keys["ana"], "spring", "schedule")
    assert live["state"] == "live"
    patched = await client.patch("/v1/admin/campaigns/spring", headers=keys["author"],
                                 json={"targeting": {"countries": ["FRA"]}, "channels": ["display", "sms"]})
    body = await patched.json()
    assert patched.status == 200, body
    assert body["targeting"] == live["targeting"] and body["channels"] == live["channels"]  # still running as was
    assert body["pending"]["targeting"]["countries"] == ["FRA"] and body["pending"]["channels"] == ["display", "sms"]
    assert (body["pending"]["rule"], body["pending"]["approvals_required"]) == ("regulated_channel", 2)
    assert await bids(client, keys)  # the approved targeting keeps bidding until the change is approved
    await step(client, keys["ana"], "spring", "approve")
    applied = await step(client, keys["ben"], "spring", "approve")
    assert applied["targeting"]["countries"] == ["FRA"] and applied["channels"] == ["display", "sms"]


async def test_the_rules_and_the_fields_that_need_approval_come_from_configuration(aiohttp_client, tmp_path, clock):
    rules = [{"name": "everything", "approvers": 3}]
    config = make_config(tmp_path, campaigns__approval_rules=json.dumps(rules), campaigns__reapprove_fields="[]")
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    keys = {}
    for name in ("author", "ana", "ben", "cy"):
        _, key = await platform.api_keys.create(name, "admin")
        keys[name] = {"X-Api-Key": key}
    await client.post("/v1/admin/campaigns", json=new_campaign(), headers=keys["author"])
    submitted = await step(client, keys["author"], "spring", "submit")
    assert (submitted["approval_rule"], submitted["approvals_required"]) == ("everything", 3)
    for who in ("ana", "ben"):
        assert (await step(client, keys[who], "spring", "approve"))["state"] == "in_review"
    assert (await step(client, keys["cy"], "spring", "approve"))["state"] == "approved"
    await step(client, keys["ana"], "spring", "schedule")
    # No field needs approval again: a live campaign's budget changes at once.
    patched = await client.patch("/v1/admin/campaigns/spring", json={"daily_budget_micros": 9_000_000_000},
                                 headers=keys["author"])
    body = await patched.json()
    assert body["state"] == "live" and body["daily_budget_micros"] == 9_000_000_000 and body["pending"] is None


async def test_a_key_an_admin_makes_acts_for_them_so_it_cannot_approve_their_campaign(team):
    """Approvals keep four eyes: an admin who makes API keys through the API cannot approve their own campaign with
    one, nor count twice on a two-approver rule; a key made with a key acts for the same person."""
    client, keys, _ = team

    async def minted(by: dict[str, str], name: str) -> dict[str, str]:
        resp = await client.post("/v1/admin/api-keys", json={"name": name, "role": "admin"}, headers=by)
        assert resp.status == 201, await resp.text()
        return {"X-Api-Key": (await resp.json())["key"]}

    mine = await minted(keys["author"], "author-laptop")
    again = await minted(mine, "author-script")  # made with the first: still the author's
    await client.post("/v1/admin/campaigns", json=new_campaign(id="big", daily_budget_micros=5_000_000_000),
                      headers=keys["author"])
    await step(client, keys["author"], "big", "submit")
    for key in (mine, again):
        refused = await step(client, key, "big", "approve", status=403)
        assert "cannot approve" in refused["error"]["message"]
    ana = await minted(keys["ana"], "ana-laptop")
    assert (await step(client, keys["ana"], "big", "approve"))["state"] == "in_review"
    twice = await step(client, ana, "big", "approve", status=409)  # ana through her own key: one approver
    assert "already approved" in twice["error"]["message"]
    assert (await step(client, keys["ben"], "big", "approve"))["state"] == "approved"
    listed = (await (await client.get("/v1/admin/api-keys", headers=keys["ben"])).json())["items"]
    owners = {k["name"]: k["created_by"] for k in listed}
    assert owners["author-laptop"] == owners["author-script"] == keys["author_scope"]
    assert owners["ana-laptop"] == keys["ana_scope"] and owners["author"] == ""  # made with the CLI's call
