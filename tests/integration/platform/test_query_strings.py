"""Query strings: an endpoint that declares no query parameters refuses any it is sent (400 naming them), as one that
declares some refuses the ones it does not name, so a parameter is never silently ignored; the probes, the metrics
scrape, the OpenAPI document, the console's files and the streams' credentials keep working."""

from __future__ import annotations

import aiohttp
import pytest

from app.main import PLATFORM

CAMPAIGN = {"id": "q1", "name": "Query test", "advertiser_domain": "contrail.example", "bid_cap_micros": 4_000_000,
            "daily_budget_micros": 100_000_000,
            "creatives": [{"id": "c1", "format": "banner", "markup": "<b>fly</b>", "w": 300, "h": 250}]}


@pytest.fixture
async def admin(client) -> dict[str, str]:
    _, key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    return {"X-Api-Key": key}


def refused(error: dict, *names: str) -> None:
    """The error of an endpoint declaring query parameters for one it does not name: the same code, message and
    details."""
    assert error["code"] == "invalid_argument", error
    assert error["message"].startswith(f"unknown query parameter(s): {', '.join(names)}"), error
    assert error["details"] == {"unknown": list(names)}, error


async def test_a_workflow_step_refuses_a_query_and_takes_no_step(client, admin):
    assert (await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=admin)).status == 201
    resp = await client.post("/v1/admin/campaigns/q1/submit?comment=please+review", headers=admin)
    assert resp.status == 400
    refused((await resp.json())["error"], "comment")
    campaign = await (await client.get("/v1/admin/campaigns/q1", headers=admin)).json()
    assert campaign["state"] == "draft"  # nothing was submitted with the comment dropped
    # The comment where it belongs is taken.
    resp = await client.post("/v1/admin/campaigns/q1/submit", json={"comment": "please review"}, headers=admin)
    assert resp.status == 200, await resp.text()
    resp = await client.get("/v1/admin/campaigns/q1/history?limit=1", headers=admin)
    assert resp.status == 400  # not the whole history as though a limit had been applied
    refused((await resp.json())["error"], "limit")


@pytest.mark.parametrize("method, path, names", [
    ("POST", "/v1/admin/reco/train?x=1", ("x",)),
    ("GET", "/v1/admin/ltv/model?horizon_days=30", ("horizon_days",)),
    ("GET", "/v1/me?verbose=1&a=2", ("a", "verbose")),
    ("GET", "/v1/reco/items/dest-BCN?fields=all", ("fields",)),
    ("GET", "/v1/ping?x=1", ("x",)),
    # The streams' credentials are read from the query on /v1/stream/ only: elsewhere they would be ignored.
    ("GET", "/v1/admin/models?api_key=ck_x", ("api_key",)),
])
async def test_an_endpoint_declaring_no_query_refuses_one_naming_it(client, admin, method, path, names):
    resp = await client.request(method, path, headers=admin)
    assert resp.status == 400, await resp.text()
    refused((await resp.json())["error"], *names)


async def test_a_refused_query_changes_nothing(client, admin):
    reco = client.app[PLATFORM].reco
    resp = await client.post("/v1/admin/reco/train?x=1", headers=admin)
    assert resp.status == 400
    assert reco.trained == 0 and reco.last_evaluation is None  # no training ran
    resp = await client.put("/v1/reco/items/dest-NEW?hidden=true", json={}, headers=admin)
    assert resp.status == 400
    refused((await resp.json())["error"], "hidden")
    assert (await client.get("/v1/reco/items/dest-NEW", headers=admin)).status == 404


async def test_an_empty_query_string_is_no_parameter(client, admin):
    for path in ("/v1/me?", "/v1/me?&", "/health/live?"):
        resp = await client.get(path, headers=admin)
        assert resp.status == 200, (path, await resp.text())


async def test_probes_scrape_document_and_console_take_any_query(client):
    for path in ("/health/live?probe=k8s", "/health/ready?verbose=1", "/metrics?name[]=contrail_http_requests",
                 "/openapi.json?v=2", "/index.html?v=2"):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())


async def test_streams_take_their_credentials_and_only_them_in_the_query(client, admin):
    key = admin["X-Api-Key"]
    async with client.ws_connect(f"/v1/stream/bids?api_key={key}") as ws:
        assert not ws.closed
    async with client.ws_connect(f"/v1/stream/events?api_key={key}&types=CampaignChanged") as ws:
        assert not ws.closed
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused_handshake:
        async with client.ws_connect(f"/v1/stream/bids?api_key={key}&since=0"):
            pass
    assert refused_handshake.value.status == 400
    resp = await client.get(f"/v1/stream/bids?api_key={key}&since=0",
                            headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_argument" and error["details"] == {"unknown": ["since"]}, error
    assert "since" in error["message"] and "token" in error["message"], error  # it says what is taken
