"""The asset sync's edits are no one's, against the app wired to a loopback AEM Assets: refreshing a creative to its
asset's newer version neither makes the sync the campaign's last editor (which let an admin approve their own
changes) nor takes a rejected campaign back to draft."""

from __future__ import annotations

import contextlib

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.campaigns.test_team_tools import step, tools
from tests.integration.integrations.test_dam import AEM_ASSETS, AEM_TOKEN

HERO = "campaigns/summer/hero.jpg"


@pytest.fixture
async def app_with_aem(aiohttp_client, aiohttp_server, tmp_path, clock):
    """The app with AEM as its asset library, and four admins' keys and scopes."""
    _, _, base = await tools(aiohttp_server)
    config = make_config(tmp_path, integrations__dam="aem", integrations__dam_url=base,
                         integrations__dam_token=AEM_TOKEN)
    client = await aiohttp_client(create_app(config, clock=clock))
    keys, scopes = {}, {}
    for name in ("author", "ana", "ben", "cara"):
        made, key = await client.app[PLATFORM].api_keys.create(name, "admin")
        keys[name], scopes[name] = {"X-Api-Key": key}, f"api_key:{made.id}"
    return client, keys, scopes


async def summer_with_hero(client, author) -> None:
    """Campaign "summer", a draft by the author, with the hero image imported from AEM as its creative."""
    body = {"id": "summer", "name": "Summer", "advertiser_domain": "contrail.example", "bid_cap_micros": 4_000_000,
            "daily_budget_micros": 100_000_000}
    assert (await client.post("/v1/admin/campaigns", json=body, headers=author)).status == 201
    resp = await client.post("/v1/admin/campaigns/summer/creatives/import", headers=author,
                             json={"asset_ids": [HERO], "w": 300, "h": 250})
    assert resp.status == 200, await resp.text()


@contextlib.contextmanager
def newer_hero(modified: str = "2026-06-01T08:00:00Z"):
    """A newer version of the hero image in AEM, for the length of the block."""
    old = AEM_ASSETS[HERO]
    AEM_ASSETS[HERO] = {**old, "modified": modified}
    try:
        yield
    finally:
        AEM_ASSETS[HERO] = old


async def campaign(client, who) -> dict:
    resp = await client.get("/v1/admin/campaigns/summer", headers=who)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_an_asset_sync_does_not_let_anyone_who_edited_the_campaign_approve_it(app_with_aem):
    client, keys, scopes = app_with_aem
    await summer_with_hero(client, keys["author"])
    resp = await client.patch("/v1/admin/campaigns/summer", headers=keys["ana"],
                              json={"daily_budget_micros": 900_000_000, "targeting": {"countries": ["PT", "ES"]}})
    assert resp.status == 200, await resp.text()
    resp = await client.patch("/v1/admin/campaigns/summer", headers=keys["ben"], json={"name": "Summer sun"})
    assert resp.status == 200, await resp.text()
    with newer_hero():
        assert await client.app[PLATFORM].campaigns_domain.assets.sync() == 1
    got = await campaign(client, keys["ana"])
    assert got["creatives"][0]["dam_version"] == "2026-06-01T08:00:00Z" and got["state"] == "draft"
    assert got["edited_by"] == scopes["ben"]  # the sync is nobody's last edit
    assert got["editors"] == [scopes["author"], scopes["ana"], scopes["ben"]]
    history = await (await client.get("/v1/admin/campaigns/summer/history", headers=keys["ana"])).json()
    assert (history["items"][-1]["actor"], history["items"][-1]["action"]) == ("dam-sync", "edit")

    await step(client, keys["ana"], "summer", "submit")
    for who in ("ana", "ben", "author"):  # ana's budget and targeting, ben's name, the author's campaign
        resp = await client.post("/v1/admin/campaigns/summer/approve", headers=keys[who])
        assert resp.status == 403, (who, await resp.text())
        assert "cannot approve" in (await resp.json())["error"]["message"]
    approved = await step(client, keys["cara"], "summer", "approve")
    assert (approved["state"], approved["approvals"], approved["editors"]) == ("approved", [scopes["cara"]], [])

    # On the approved campaign, the sync's refresh waits for approval with whoever's changes wait already.
    resp = await client.patch("/v1/admin/campaigns/summer", headers=keys["ana"],
                              json={"daily_budget_micros": 950_000_000})
    assert resp.status == 200, await resp.text()
    with newer_hero("2026-07-01T08:00:00Z"):
        assert await client.app[PLATFORM].campaigns_domain.assets.sync() == 1
    got = await campaign(client, keys["ana"])
    assert got["edited_by"] == scopes["ana"] and got["pending"]["editors"] == [scopes["ana"], "dam-sync"]
    assert got["pending"]["creatives"][0]["dam_version"] == "2026-07-01T08:00:00Z"
    resp = await client.post("/v1/admin/campaigns/summer/approve", headers=keys["ana"])
    assert resp.status == 403, await resp.text()
    assert (await step(client, keys["ben"], "summer", "approve"))["pending"] is None


async def test_an_asset_sync_leaves_a_rejected_campaign_rejected(app_with_aem):
    client, keys, _ = app_with_aem
    await summer_with_hero(client, keys["author"])
    await step(client, keys["author"], "summer", "submit")
    await step(client, keys["ana"], "summer", "reject", comment="wrong audience")
    with newer_hero():
        assert await client.app[PLATFORM].campaigns_domain.assets.sync() == 1
    got = await campaign(client, keys["ana"])
    assert got["state"] == "rejected" and got["creatives"][0]["dam_version"] == "2026-06-01T08:00:00Z"
    history = await (await client.get("/v1/admin/campaigns/summer/history", headers=keys["ana"])).json()
    assert [(e["actor"], e["action"], e["from_state"], e["to_state"]) for e in history["items"][-2:]] == [
        (history["items"][-2]["actor"], "reject", "in_review", "rejected"),
        ("dam-sync", "edit", "rejected", "rejected")]
    # Taken up again only when someone asks: submitting it sends it back through draft, as before.
    resubmitted = await step(client, keys["author"], "summer", "submit")
    assert resubmitted["state"] == "in_review"
