"""Omnichannel ingest: validation per event, stars, profile write-behind, triggered activations."""

import asyncio

import pytest

from app.channels.ingest import interest_index
from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.channels.helpers import Relay


@pytest.fixture
async def app_and_relay(aiohttp_client, tmp_path, clock):
    relay = await Relay().start()
    config = make_config(tmp_path, smtp__port=relay.port, ingest__enabled_sources='["mobile_app","pos","web"]')
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    yield client, {"X-Api-Key": key}, relay
    await relay.stop()


async def test_batches_report_each_bad_event_and_accept_the_rest(app_and_relay):
    client, staff, _ = app_and_relay
    batch = [{"source": "web", "type": "page_view", "user_id": "u1"},
             {"source": "kiosk", "type": "page_view", "user_id": "u1"},          # disabled source
             {"source": "web", "type": "teleport", "user_id": "u1"},             # unknown type
             {"source": "web", "type": "page_view"},                             # nobody
             {"source": "pos", "type": "purchase", "user_id": "u1"},             # no amount
             {"source": "web", "type": "click", "user_id": "u1", "product_id": "a/b c"},  # not an item id
             {"source": "web", "type": "page_view", "device_id": "d1", "extra": 1},  # unknown field
             {"source": "web", "type": "page_view", "device_id": "d1", "at": -1},     # before 1970
             {"source": "mobile_app", "type": "app_open", "device_id": "d1"}]
    resp = await client.post("/v1/channels/ingest", json=batch, headers=staff)
    body = await resp.json()
    assert resp.status == 200 and body["accepted"] == 2
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert set(errors) == {1, 2, 3, 4, 5, 6, 7}
    assert "disabled" in errors[1] and "type must be one of" in errors[2] and "user_id or device_id" in errors[3]
    assert "amount_cents" in errors[4] and "no spaces, slashes or control characters" in errors[5]
    assert "extra" in errors[6] and ">= 0" in errors[7] and "at" in errors[7]
    # Without the malformed events the batch decodes in one pass: the same per-event answers.
    body = await (await client.post("/v1/channels/ingest", json=batch[:6], headers=staff)).json()
    assert body["accepted"] == 1 and {r["index"]: r["error"] for r in body["rejected"]} == \
        {k: v for k, v in errors.items() if k < 6}
    far = await client.post("/v1/channels/ingest", json={**batch[0], "at": 1e300}, headers=staff)
    assert far.status == 422 and (await far.json())["error"]["message"].startswith(  # a clock far ahead, refused
        "event 0 (page_view) is more than 3,000 years in the future")
    single = await client.post("/v1/channels/ingest", json={"source": "web", "type": "search", "user_id": "u2"},
                               headers=staff)
    assert (await single.json())["accepted"] == 1
    assert (await client.post("/v1/channels/ingest", data=b"[", headers=staff)).status == 400
    assert (await client.post("/v1/channels/ingest", json=[], headers=staff)).status == 400
    assert (await client.post("/v1/channels/ingest", json=batch)).status == 401


async def test_purchases_swipes_and_check_ins_earn_stars_once(app_and_relay):
    client, staff, _ = app_and_relay
    events = [{"source": "pos", "type": "purchase", "user_id": "rui", "amount_cents": 12_345, "transaction_id": "p1"},
              {"source": "pos", "type": "loyalty_swipe", "user_id": "rui", "amount_cents": 1_000,
               "transaction_id": "s1"},
              {"source": "mobile_app", "type": "check_in", "user_id": "rui"}]
    body = await (await client.post("/v1/channels/ingest", json=events, headers=staff)).json()
    assert body["stars_earned_events"] == 3
    await client.post("/v1/channels/ingest", json=events, headers=staff)  # replayed: the same transactions
    balance = await (await client.get("/v1/loyalty/balance/rui", headers=staff)).json()
    assert balance["balance"] == 124 + 10 + 25


async def test_events_update_the_profile_bidding_reads(app_and_relay, clock):
    client, staff, _ = app_and_relay
    platform = client.app[PLATFORM]
    events = [{"source": "web", "type": "product_view", "user_id": "sam", "category": "beach holidays"}] * 3
    await client.post("/v1/channels/ingest", json=events, headers=staff)
    assert await platform.ingest.flush_profiles() == 1
    profile = await platform.profiles.get("sam")
    assert profile.interests[interest_index("beach holidays")] == pytest.approx(0.3)
    assert profile.last_seen == pytest.approx(clock.now())


async def test_triggers_reach_the_customer_and_browsing_only_in_an_active_session(app_and_relay, clock):
    client, staff, relay = app_and_relay
    await client.put("/v1/loyalty/members/tia", json={"email": "tia@example.com"}, headers=staff)
    view = {"source": "web", "type": "product_view", "user_id": "tia", "session_id": "s1"}
    await client.post("/v1/channels/ingest", json=view, headers=staff)  # first activity of the session: no trigger
    await asyncio.sleep(0.2)
    assert relay.messages == []
    clock.advance(10 * 60)
    await client.post("/v1/channels/ingest", json=view, headers=staff)  # active session: follow up
    [mail] = await relay.wait_for(1)
    assert mail["Subject"] == "Seen something you like?"
    clock.advance(31 * 60)
    await client.post("/v1/channels/ingest", json=view, headers=staff)  # session gone quiet: no trigger
    await client.post("/v1/channels/ingest", headers=staff,
                      json={"source": "web", "type": "cart_abandon", "user_id": "tia"})
    mails = await relay.wait_for(2)
    await asyncio.sleep(0.2)
    assert [m["Subject"] for m in mails] == ["Seen something you like?", "Still thinking about your trip?"]


async def test_web_visitors_get_web_personalisation(app_and_relay, clock):
    client, staff, relay = app_and_relay
    body = {"user_id": "zoe", "subject": "Back again?", "text": "Lisbon from $49 this week"}
    assert (await (await client.post("/v1/channels/activate", json=body, headers=staff)).json())["status"] == \
        "unreachable"
    await client.post("/v1/channels/ingest", json={"source": "web", "type": "page_view", "user_id": "zoe"},
                      headers=staff)
    result = await (await client.post("/v1/channels/activate", json=body, headers=staff)).json()
    assert result["channel"] == "web" and result["status"] == "delivered"
    inbox = await client.app[PLATFORM].inapp.inbox("zoe", 10, None)
    assert [m.subject for m in inbox] == ["Back again?"]
    # A replayed visit from 40 days ago does not take her last visit back to then.
    await client.post("/v1/channels/ingest", json={"source": "web", "type": "page_view", "user_id": "zoe",
                                                   "at": clock.now() - 40 * 86_400}, headers=staff)
    result = await (await client.post("/v1/channels/activate", json=body, headers=staff)).json()
    assert result["channel"] == "web" and result["status"] == "delivered"
    clock.advance(31 * 86_400)
    assert (await (await client.post("/v1/channels/activate", json=body, headers=staff)).json())["status"] == \
        "unreachable"


async def test_profile_updates_still_waiting_are_written_at_shutdown(aiohttp_client, tmp_path, clock):
    """The write-behind's last batch is not lost to a graceful stop: the next start reads it."""
    config = make_config(tmp_path, ingest__profile_flush_interval_s="3600")
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    event = {"source": "web", "type": "product_view", "user_id": "ivy", "category": "ski trips"}
    assert (await client.post("/v1/channels/ingest", json=event, headers={"X-Api-Key": key})).status == 200
    await client.close()
    client = await aiohttp_client(create_app(config, clock=clock))
    profile = await client.app[PLATFORM].profiles.get("ivy")
    assert profile is not None and profile.interests[interest_index("ski trips")] > 0
