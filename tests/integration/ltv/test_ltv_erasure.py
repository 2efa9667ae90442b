"""An erased customer (DELETE /v1/customers/{id}) against lifetime value: nothing is valued from their purchases
(the ledger keeps them: the law obliges it), they leave the distribution, and the values held of them are dropped."""

from __future__ import annotations

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import bearer, make_config
from tests.integration.ltv.helpers import DAY, shop_history

BIDS = "openrtb"


async def big_spender(client, clock) -> str:
    """A member who bought four times, big: valued above everyone, held in the caches and the bids' values."""
    platform = client.app[PLATFORM]
    await bearer(client, "lena@example.com", "correct horse battery", "customer")
    me = platform.account_store.by_email("lena@example.com").id
    for n in range(4):
        await platform.loyalty.earn(me, 150_000, "web", f"lena-{n}")
        clock.advance(20 * DAY)
    return me


@pytest.fixture
async def app(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, ltv__refit_interval_s=0,
                                                         ltv__refit_after_purchases=0), clock=clock))
    platform = client.app[PLATFORM]
    await shop_history(platform, clock, customers=150)
    me = await big_spender(client, clock)
    assert (await platform.ltv.refit())["live"] is True
    _, key = await platform.api_keys.create("ops", "admin")
    return client, {"X-Api-Key": key}, me


async def test_forgetting_a_customer_drops_their_history_and_the_values_bids_read(app):
    """What erasure calls (Ltv.forget): nothing held of the customer survives it, nor a value asked just before."""
    client, admin, me = app
    platform = client.app[PLATFORM]
    values = platform.ltv_domain.values
    await platform.ltv.customer(me)
    values.value(me, BIDS)
    values.value(me, "activation")
    await values.refresh()
    assert values.value(me, BIDS)[1] == "model" and platform.ltv.histories.peek(me) is not None

    platform.ltv_domain.forget(me)
    assert platform.ltv.histories.peek(me) is None
    assert values.value(me, BIDS)[1] != "model" and (BIDS, me) in values.queue  # asked again: not from memory
    assert (("activation", me)) not in values.queue and values.cache.peek(("activation", me)) is None

    # A pass already asking the model when the customer is forgotten does not bring their value back.
    real_fetch = values._fetch

    async def forgotten_meanwhile(ids, platform_, timeout):
        answer = await real_fetch(ids, platform_, timeout)
        platform.ltv_domain.forget(me)
        return answer
    values._fetch = forgotten_meanwhile
    try:
        await values.refresh()
    finally:
        values._fetch = real_fetch
    assert values.cache.peek((BIDS, me)) is None


async def test_an_erased_customer_is_valued_from_no_purchase_and_leaves_the_distribution(app):
    client, admin, me = app
    platform = client.app[PLATFORM]
    before = await (await client.get(f"/v1/customers/{me}/ltv", headers=admin)).json()
    assert before["status"] == "SUCCESS"
    platform.ltv_domain.values.value(me, BIDS)
    await platform.ltv_domain.values.refresh()
    spread = await (await client.get("/v1/admin/ltv/distribution", headers=admin)).json()
    assert me in [t["customer_id"] for t in spread["top"]]

    assert (await client.delete(f"/v1/customers/{me}", headers=admin)).status == 200
    after = await (await client.get(f"/v1/customers/{me}/ltv", headers=admin)).json()
    stranger = await (await client.get("/v1/customers/never-bought/ltv", headers=admin)).json()
    assert after["status"] == "NO_HISTORY"
    assert (after["predicted_ltv"], after["top_features"]) == (stranger["predicted_ltv"], stranger["top_features"])
    erased = await (await client.get("/v1/admin/ltv/distribution", headers=admin)).json()
    assert me not in [t["customer_id"] for t in erased["top"]] and erased["customers"] == spread["customers"] - 1
    assert platform.ltv_domain.values.value(me, BIDS)[1] != "model"
