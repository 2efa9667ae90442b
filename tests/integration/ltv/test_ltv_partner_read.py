"""Who may read a customer's lifetime value over GET /v1/customers/{id}/ltv: the same callers who may ask for it
elsewhere. Partner systems value customers for bidding (POST /v1/ltv/predict, gRPC SyncValue), so a partner key
reads any customer's value here too, the same value; a customer reads only their own; other keys none."""

from __future__ import annotations

import math

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import bearer, make_config
from tests.integration.ltv.helpers import shop_history


@pytest.fixture
async def valued(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, ltv__refit_interval_s=0, ltv__refit_after_purchases=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    await shop_history(platform, clock, customers=200)
    _, key = await platform.api_keys.create("ops", "admin")
    admin = {"X-Api-Key": key}
    resp = await client.post("/v1/admin/ltv/refit", headers=admin)
    assert resp.status == 200 and (await resp.json())["live"] is True, await resp.text()
    return client, admin


async def test_a_partner_reads_any_customers_value_as_predict_gives_it_and_a_customer_only_their_own(valued):
    client, admin = valued
    platform = client.app[PLATFORM]
    _, key = await platform.api_keys.create("bidder", "partner")
    partner = {"X-Api-Key": key}

    resp = await client.get("/v1/customers/cust-1/ltv", headers=partner)
    assert resp.status == 200, await resp.text()
    read = await resp.json()
    predicted = await (await client.post("/v1/ltv/predict", json={"customer_id": "cust-1"}, headers=partner)).json()
    staff = await (await client.get("/v1/customers/cust-1/ltv", headers=admin)).json()
    assert read["customer_id"] == "cust-1" and read["status"] == predicted["status"] == "SUCCESS", read
    assert math.isclose(read["predicted_ltv"], predicted["predicted_ltv"], rel_tol=1e-9)
    assert math.isclose(read["predicted_ltv"], staff["predicted_ltv"], rel_tol=1e-9)
    resp = await client.get("/v1/customers/cust-1/ltv", params={"horizon_days": "90"}, headers=partner)
    assert resp.status == 200 and (await resp.json())["horizon_days"] == 90

    # A customer still reads only their own value; a key of another role reads none.
    member = await bearer(client, "lena@example.com", "correct horse battery", "customer")
    me = platform.account_store.by_email("lena@example.com").id
    assert (await client.get(f"/v1/customers/{me}/ltv", headers=member)).status == 200
    assert (await client.get("/v1/customers/cust-1/ltv", headers=member)).status == 403
    _, exchange = await platform.api_keys.create("adx", "exchange")
    assert (await client.get("/v1/customers/cust-1/ltv", headers={"X-Api-Key": exchange})).status == 403
    assert (await client.get("/v1/customers/cust-1/ltv")).status == 401
