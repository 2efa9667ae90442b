"""Offer search through the real app: a signed-in customer's recommendations choose the optional ancillary of the
comfort and premium bundles; guests and customers without history keep the bundles as listed."""

from app.demo import DEMO_PRODUCTS
from app.main import PLATFORM
from app.retail.pricing import percent_of
from tests.integration.retail.helpers import accept, customer, search

PRICE = {pid: price for pid, _, _, price, _ in DEMO_PRODUCTS}


async def staff(client) -> dict[str, str]:
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    return {"X-Api-Key": key}


async def seed_reco(client, headers, events: list[dict]) -> None:
    """The catalog's ancillaries as recommendation items, and the customers' events through ingest."""
    items = [{"item_id": pid, "category": "ancillary", "tags": [kind]} for pid, kind, *_ in DEMO_PRODUCTS]
    items += [{"item_id": "dest-BCN", "category": "destination"}]
    resp = await client.post("/v1/reco/items", json=items, headers=headers)
    assert resp.status == 200, await resp.text()
    resp = await client.post("/v1/channels/ingest", json=events, headers=headers)
    assert resp.status == 200 and (await resp.json())["rejected"] == [], await resp.text()
    await client.app[PLATFORM].bus.idle()  # reco learns from ingest's events in the background


def account_id(client, name: str) -> str:
    return client.app[PLATFORM].account_store.by_email(f"{name}@example.com").id


def bundle(offers: list[dict], name: str) -> dict:
    [offer] = [o for o in offers if o["bundle"] == name]
    return offer


def products(offer: dict) -> list[str]:
    return [i["product_id"] for i in offer["items"][1:]]


def check_priced(client, offer: dict, penalty_percent: int) -> None:
    """Every ancillary at its list price (these bundles discount nothing), the total and conditions by the rules."""
    cfg = client.app[PLATFORM].config.retail
    for item in offer["items"][1:]:
        assert item["unit_price_cents"] == PRICE[item["product_id"]] and item["discount_percent"] == 0
        assert item["total_cents"] == item["unit_price_cents"] * offer["passengers"]
    subtotal = sum(i["total_cents"] for i in offer["items"])
    assert offer["taxes_cents"] == percent_of(subtotal, cfg.tax_percent)
    assert offer["total_cents"] == subtotal + offer["taxes_cents"] + cfg.booking_fee_cents
    assert offer["conditions"]["refundable"] is True
    assert offer["conditions"]["refund_penalty_cents"] == percent_of(offer["total_cents"], penalty_percent)


LISTED_COMFORT = ["seat-standard", "bag-23kg", "meal-hot"]
LISTED_PREMIUM = ["seat-standard", "bag-23kg", "meal-hot", "lounge-pass", "fasttrack", "insurance-travel"]


async def test_recommended_ancillaries_choose_the_optional_one_in_comfort_and_premium(shop, clock):
    client, flight = shop
    platform = client.app[PLATFORM]
    headers = await staff(client)
    fan = await customer(client, "lounge-fan")
    fan_id = account_id(client, "lounge-fan")
    now = clock.now()
    # Lounge-and-offset shoppers; this customer puts lounges and carbon offsets in the cart and dismisses meals.
    events = []
    for u in range(4):
        events += [{"source": "web", "type": "cart_add", "user_id": f"o{u}", "product_id": p, "at": now - 900 + u}
                   for p in ("lounge-pass", "carbon-offset")]
    events += [{"source": "web", "type": "cart_add", "user_id": fan_id, "product_id": "lounge-pass", "at": now - 60},
               {"source": "web", "type": "cart_add", "user_id": fan_id, "product_id": "carbon-offset", "at": now - 50},
               {"source": "web", "type": "dismiss", "user_id": fan_id, "product_id": "meal-hot", "at": now - 40}]
    await seed_reco(client, headers, events)
    answer = await platform.reco.recommend(fan_id, "personalized", 10, ["ancillary"])
    ranked = [i["item_id"] for i in answer["items"]]
    assert answer["model"] != "popular" and "meal-hot" not in ranked

    offers = await search(client, fan, clock)
    comfort, premium = bundle(offers, "comfort"), bundle(offers, "premium")
    # The optional ancillary is the one the customer's list ranks first among those the bundle may take.
    comfort_pick = next(p for p in ranked if p in ("lounge-pass", "fasttrack", "insurance-travel", "carbon-offset"))
    premium_pick = next(p for p in ranked if p in ("insurance-travel", "carbon-offset"))
    assert products(comfort) == ["seat-standard", "bag-23kg", comfort_pick] != LISTED_COMFORT
    assert products(premium) == [*LISTED_PREMIUM[:-1], premium_pick]
    check_priced(client, comfort, 25)
    check_priced(client, premium, 10)
    assert {i["kind"] for i in comfort["items"]} == {"Flight", "Seat", "Bag",
                                                    {p: k for p, k, *_ in DEMO_PRODUCTS}[comfort_pick]}

    # A guest and a customer without history get the bundles as listed.
    guest = {"Authorization": f"Bearer {(await (await client.post('/v1/auth/guest')).json())['access_token']}"}
    for who in (guest, await customer(client, "newcomer")):
        offers = await search(client, who, clock)
        assert products(bundle(offers, "comfort")) == LISTED_COMFORT
        assert products(bundle(offers, "premium")) == LISTED_PREMIUM

    # The draft cache keeps the listed bundles for everyone, and the customer's choice beside them, which shares
    # the listed drafts of the bundles it leaves alone (flight only here).
    drafts = platform.offers.drafts
    listed = drafts.peek((flight.id, "economy", 1, "economy", ()))[1]
    [chosen] = [v[1] for k, v in drafts.items() if k[:4] == (flight.id, "economy", 1, "economy") and k[4]]
    assert [d.offer.bundle for d in chosen] == [d.offer.bundle for d in listed]
    assert chosen[0] is listed[0] and chosen[1] is not listed[1]

    # The recommended bundle is sold like any other: accepting it holds the chosen product.
    resp = await accept(client, fan, comfort["id"])
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert [i["product_id"] for i in order["items"]][1:] == products(comfort)


async def test_a_chosen_product_without_room_falls_back_to_the_listed_one(shop, clock, admin_headers):
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await staff(client)
    fan = await customer(client, "fast")
    fan_id = account_id(client, "fast")
    now = clock.now()
    await seed_reco(client, headers, [
        {"source": "web", "type": "cart_add", "user_id": fan_id, "product_id": "fasttrack", "at": now - 60},
        {"source": "web", "type": "dismiss", "user_id": fan_id, "product_id": "meal-hot", "at": now - 50}])
    ranked = [i["item_id"] for i in (await platform.reco.recommend(fan_id, "personalized", 10, ["ancillary"]))["items"]]
    assert ranked[0] == "fasttrack"
    assert products(bundle(await search(client, fan, clock), "comfort"))[-1] == "fasttrack"
    # No fast-track places left on any flight: comfort is as listed again (premium, which lists it, is not offered).
    resp = await client.patch("/v1/admin/products/fasttrack", json={"capacity_per_flight": 0}, headers=admin_headers)
    assert resp.status == 200, await resp.text()
    offers = await search(client, fan, clock)
    assert products(bundle(offers, "comfort")) == LISTED_COMFORT
    assert "premium" not in {o["bundle"] for o in offers}


async def test_search_goes_on_with_the_listed_bundles_when_recommendations_fail(shop, clock, monkeypatch):
    client, _ = shop
    platform = client.app[PLATFORM]
    fan = await customer(client, "unlucky")

    async def broken(*args, **kwargs):
        raise RuntimeError("engine down")
    monkeypatch.setattr(platform.reco, "recommend", broken)
    offers = await search(client, fan, clock)
    assert products(bundle(offers, "comfort")) == LISTED_COMFORT
