"""Staff look members up by id prefix (the console's loyalty section)."""

from app.main import PLATFORM
from tests.integration.loyalty.helpers import earn


async def test_members_are_found_by_id_prefix_with_their_balance(client, admin_headers, customer_headers):
    _, key = await client.app[PLATFORM].api_keys.create("pos", "partner")
    staff = {"X-Api-Key": key}
    for user, amount in (("ana-1", 1_000), ("ANA-2", 2_000), ("bo", 500)):
        assert (await earn(client, staff, user, amount, f"t-{user}")).status == 201

    async def found(**params) -> list[tuple[str, int]]:
        resp = await client.get("/v1/admin/loyalty/members", params=params, headers=admin_headers)
        assert resp.status == 200, await resp.text()
        return [(m["user_id"], m["balance"]) for m in (await resp.json())["items"]]
    assert await found(q="ana") == [("ANA-2", 20), ("ana-1", 10)]
    assert await found(q="ana", limit=1) == [("ANA-2", 20)]
    assert [u for u, _ in await found()] == ["ANA-2", "ana-1", "bo"]
    assert await found(q="zed") == []
    assert (await client.get("/v1/admin/loyalty/members", headers=customer_headers)).status == 403
    bad = await client.get("/v1/admin/loyalty/members", params={"limit": 0}, headers=admin_headers)
    assert bad.status == 400 and "limit" in (await bad.json())["error"]["message"]


async def test_the_programme_rules_are_public(client):
    program = await (await client.get("/v1/loyalty/program")).json()
    assert [(t["name"], t["qualifying_stars"]) for t in program["tiers"]] == [("Green", 0), ("Gold", 500),
                                                                             ("Reserve", 2500)]
    rewards = {r["stars"]: (r["value_cents"], r["min_tier"]) for r in program["rewards"]}
    assert rewards[25] == (80, "Green") and rewards[500] == (2500, "Gold")


async def test_stars_earned_go_on_the_bus_once_per_transaction(client):
    from app.loyalty.events import StarsEarned
    platform = client.app[PLATFORM]
    heard: list[StarsEarned] = []
    platform.bus.subscribe(StarsEarned, heard.append)
    _, key = await platform.api_keys.create("pos", "partner")
    for _ in range(2):  # the replay answers the first result and publishes nothing
        assert (await earn(client, {"X-Api-Key": key}, "cy", 1_000, "t-1")).status in (200, 201)
    assert [(e.user_id, e.transaction_id, e.stars, e.tier) for e in heard] == [("cy", "t-1", 10, "Green")]
