"""Activation limited to an LTV band: only customers whose predicted lifetime value is inside it are reached."""

from app.main import PLATFORM, create_app
from state.loyalty import Member
from tests.conftest import make_config
from tests.integration.ltv.helpers import shop_history

MESSAGE = {"subject": "Winter fares", "text": "Fares to Madeira this winter", "channel": "in_app"}


async def test_only_customers_inside_the_band_are_reached_and_the_value_is_said(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, ltv__refit_interval_s=0,
                                                         ltv__refit_after_purchases=0), clock=clock))
    platform = client.app[PLATFORM]
    _, key = await platform.api_keys.create("crm", "admin")
    admin = {"X-Api-Key": key}

    async def activate(user: str, **band) -> dict:
        resp = await client.post("/v1/channels/activate", json={"user_id": user, **MESSAGE, **band}, headers=admin)
        assert resp.status == 201, await resp.text()
        return await resp.json()

    counts = await shop_history(platform, clock, customers=200)
    assert (await activate("cust-1", ltv_min=10))["status"] == "ltv_unknown"  # no model yet: not reached
    assert (await client.post("/v1/admin/ltv/refit", headers=admin)).status == 200
    values = {c: await platform.ltv.value(c) for c in counts}
    high, low = max(values, key=values.get), min(values, key=values.get)
    middle = sorted(values.values())[len(values) // 2]
    for user in (high, low):  # members with the app: reachable in-app
        await platform.loyalty.put_member(Member(user, preferred_channel="in_app"))

    rich = await activate(high, ltv_min=middle)
    assert rich["status"] == "delivered" and rich["predicted_ltv"] == values[high]
    poor = await activate(low, ltv_min=middle)
    assert poor["status"] == "outside_ltv_band" and poor["predicted_ltv"] == values[low]
    assert (await activate(low, ltv_max=middle))["status"] == "delivered"
    assert (await activate(high, ltv_min=0, ltv_max=middle))["status"] == "outside_ltv_band"
    assert (await activate(low))["predicted_ltv"] is None  # no band: no value asked for
    inbox = await platform.inapp.inbox(high, 10, None)
    assert len(inbox) == 1  # the one activation inside the band reached them

    resp = await client.post("/v1/channels/activate", json={"user_id": high, **MESSAGE, "ltv_min": 9, "ltv_max": 1},
                             headers=admin)
    assert resp.status == 400 and "ltv_min must not be above ltv_max" in (await resp.json())["error"]["message"]
    resp = await client.post("/v1/channels/activate", json={"user_id": high, **MESSAGE, "ltv_min": -1},
                             headers=admin)
    assert resp.status == 400 and "ltv_min" in (await resp.json())["error"]["message"]
