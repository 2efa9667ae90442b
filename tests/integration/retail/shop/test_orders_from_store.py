"""Finished orders live in the store, not in memory: they leave memory once finished, a restart loads only the
live ones, and every read of a finished order (by id, by barcode, in lists, in exports) still answers from the
store. Lists are keyset pages read from the store: each order once, in order, while new ones arrive; a cursor of
the old kind (an order id) still works."""

import msgspec

from adapters.sqlite.orders import SqliteOrderStore
from app.main import PLATFORM, create_app
from handlers.rest.common import encode_cursor
from state.catalog import Cabin, Flight
from state.orders import LIVE, Order, held_items
from tests.conftest import bearer
from tests.integration.retail.helpers import DAY, accept, booked, departure_date, pay, search

LATER = 20  # days: a second flight that is still to fly when the first has been archived


async def _later_flight(platform, clock) -> Flight:
    noon = (int(clock.now() // DAY) + LATER) * DAY + 12 * 3600
    flight = Flight(id="CT301-test", airline="CT", number="CT301", origin="LIS", destination="BCN",
                    departure_at=noon, arrival_at=noon + 7_500, cabins={"economy": Cabin(30, 9_000)})
    await platform.catalog.put_flights("test", [flight], audit=False)
    return flight


def _held_by_memory(platform) -> dict[str, int]:
    return {r: n for r, n in platform.order_store.held.items() if n}


def _held_by_live(orders) -> dict[str, int]:
    held: dict[str, int] = {}
    for order in orders:
        if order.state in LIVE:
            for item in held_items(order):
                if item.resource is not None:
                    held[item.resource] = held.get(item.resource, 0) + item.quantity
    return held


async def _stored(platform) -> list[Order]:
    decode = msgspec.json.Decoder(Order).decode
    return [decode(body) for (body,) in await platform.records_db.fetchall("SELECT body FROM orders")]


async def test_finished_orders_leave_memory_and_are_still_read_after_a_restart(shop, clock, config, aiohttp_client):
    client, first = shop
    platform = client.app[PLATFORM]
    start = clock.now()
    await _later_flight(platform, clock)
    headers = await bearer(client, "history@example.com", "correct horse battery", "customer")
    flown = await booked(client, headers, clock, passengers=2)
    assert (await pay(client, headers, flown["id"])).status == 200
    codes = [b["code"] for b in (await (await client.get(f"/v1/orders/{flown['id']}/fulfillment",
                                                         headers=headers)).json())["barcodes"]]
    expired = await booked(client, headers, clock)
    cancelled = await booked(client, headers, clock)
    quote = await (await client.post(f"/v1/orders/{cancelled['id']}/cancellations", headers=headers)).json()
    assert (await client.post(f"/v1/orders/{cancelled['id']}/cancellations/{quote['id']}/confirm",
                              headers=headers)).status == 200
    clock.advance(1801)  # the unpaid hold expires
    assert (await platform.sweep_retail_once())["expired"] == 1
    clock.advance(first.departure_at - clock.now() + 7 * DAY + 1)  # a week after the first flight: archived
    assert (await platform.sweep_retail_once())["archived"] == 1
    headers = await bearer(client, "history@example.com", "correct horse battery", "customer")
    admin = await bearer(client, "ops@example.com", "correct horse battery", "admin")
    day = int((clock.now() - start) // DAY)
    paid_later = await _booked_on(client, headers, clock, LATER - day, passengers=3)
    assert (await pay(client, headers, paid_later["id"])).status == 200
    held_later = await _booked_on(client, headers, clock, LATER - day)
    finished = [flown["id"], expired["id"], cancelled["id"]]
    live = [paid_later["id"], held_later["id"]]

    async def check(client, headers, admin) -> None:
        platform = client.app[PLATFORM]
        assert {o.id for o in platform.order_store.live()} == set(live)  # finished ones are not in memory
        assert _held_by_memory(platform) == _held_by_live(await _stored(platform))
        states = {}
        for order_id in finished + live:
            resp = await client.get(f"/v1/orders/{order_id}", headers=headers)
            assert resp.status == 200, await resp.text()
            states[order_id] = (await resp.json())["state"]
        assert [states[i] for i in finished] == ["ARCHIVED", "EXPIRED", "CANCELLED"]
        assert [states[i] for i in live] == ["FULFILLED", "PROPOSED"]
        fulfilment = await (await client.get(f"/v1/orders/{flown['id']}/fulfillment", headers=headers)).json()
        assert [b["code"] for b in fulfilment["barcodes"]] == codes
        svg = await client.get(f"/v1/orders/{flown['id']}/barcodes/{codes[0]}.svg", headers=headers)
        assert svg.status == 200
        used = await client.post(f"/v1/fulfillment/{codes[0]}/consume", headers=admin)
        assert used.status == 409 and (await used.json())["error"]["details"]["state"] == "ARCHIVED"
        assert (await client.post("/v1/fulfillment/no-such-code/consume", headers=admin)).status == 404
        assert (await pay(client, headers, expired["id"])).status == 410
        again = await client.post(f"/v1/orders/{cancelled['id']}/cancellations", headers=headers)
        assert again.status == 409 and (await again.json())["error"]["details"]["state"] == "CANCELLED"
        mine = await (await client.get("/v1/orders", headers=headers)).json()
        assert [o["id"] for o in mine["items"]] == finished + live  # oldest first, finished ones included
        only = await (await client.get("/v1/orders", params={"state": "ARCHIVED"}, headers=admin)).json()
        assert [o["id"] for o in only["items"]] == [flown["id"]]
        other = await bearer(client, "someone@example.com", "correct horse battery", "customer")
        assert (await client.get(f"/v1/orders/{flown['id']}", headers=other)).status == 404

    await check(client, headers, admin)
    seats = await _seats(client, clock, LATER - day)
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await bearer(client, "history@example.com", "correct horse battery", "customer")
    admin = await bearer(client, "ops@example.com", "correct horse battery", "admin")
    assert await _seats(client, clock, LATER - day) == seats == 30 - 4
    await check(client, headers, admin)


async def _booked_on(client, headers, clock, days: int, passengers: int = 1) -> dict:
    offers = await search(client, headers, clock, passengers=passengers, departure_date=departure_date(clock, days))
    offer = next(o for o in offers if o["bundle"] == "flight_only")
    resp = await accept(client, headers, offer["id"])
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _seats(client, clock, days: int) -> int:
    resp = await client.get("/v1/flights", params={"origin": "LIS", "destination": "BCN",
                                                   "date": departure_date(clock, days)})
    return (await resp.json())["items"][0]["seats_left"]["economy"]


async def test_paging_through_every_order_while_new_ones_arrive(shop, clock, customer_headers, admin_headers):
    client, _ = shop
    platform = client.app[PLATFORM]
    other = await bearer(client, "other@example.com", "correct horse battery", "customer")
    existing = []
    for n in range(7):
        existing.append((await booked(client, customer_headers if n % 3 else other, clock))["id"])
        if n % 2:
            clock.advance(1)  # some created at the same second: the id orders those
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = await (await client.get("/v1/orders", params=params, headers=admin_headers)).json()
        seen += [o["id"] for o in page["items"]]
        await booked(client, other, clock)  # a new order between pages
        after = page["next_cursor"]
        if after is None:
            break
    assert len(seen) == len(set(seen))  # none twice
    assert [i for i in seen if i in existing] == existing  # every one that existed, once, oldest first
    stored = sorted(await _stored(platform), key=lambda o: (o.created_at, o.id))
    assert seen == [o.id for o in stored][:len(seen)]  # and what arrived meanwhile, in its place

    # A client holding a cursor of the old kind (the id of the last order it saw) still pages on from there.
    old = encode_cursor({"id": existing[2]})
    resumed = await (await client.get("/v1/orders", params={"limit": "3", "after": old},
                                      headers=admin_headers)).json()
    assert [o["id"] for o in resumed["items"]] == existing[3:6]
    unknown = await client.get("/v1/orders", params={"after": encode_cursor({"id": "ord_nope"})},
                               headers=admin_headers)
    assert unknown.status == 400


async def test_store_pages_match_a_sort_of_every_order(shop, clock, customer_headers):
    """The keyset page read through the indexes against the plain reference: every stored order sorted in memory,
    filtered, and sliced after the cursor."""
    client, _ = shop
    platform = client.app[PLATFORM]
    other = await bearer(client, "ref@example.com", "correct horse battery", "customer")
    for n in range(9):
        order = await booked(client, other if n % 2 else customer_headers, clock)
        if n % 3 == 0:
            assert (await pay(client, other if n % 2 else customer_headers, order["id"])).status == 200
        clock.advance(n % 2)
    clock.advance(1801)
    await platform.sweep_retail_once()  # the unpaid ones expire and leave memory
    every = sorted(await _stored(platform), key=lambda o: (o.created_at, o.id))
    owners = [None, *sorted({o.owner for o in every})]
    positions = [None, *((o.created_at, o.id) for o in every)]
    for owner in owners:
        for state in (None, "EXPIRED", "FULFILLED", "PROPOSED"):
            for after in positions:
                for limit in (1, 3, 100):
                    reference = [o for o in every if (owner is None or o.owner == owner)
                                 and (state is None or o.state == state)
                                 and (after is None or (o.created_at, o.id) > after)][:limit]
                    page = await platform.order_store.page(owner, state, after, limit)
                    assert page == reference, (owner, state, after, limit)


async def test_an_order_another_node_finished_leaves_this_nodes_memory(shop, clock, customer_headers):
    """Several nodes: refresh() reads back what another node committed; an order it finished leaves memory here
    too, with the seats it held, and is still read from the store."""
    client, _ = shop
    platform = client.app[PLATFORM]
    kept = await booked(client, customer_headers, clock, passengers=2)
    cancelled = await booked(client, customer_headers, clock, passengers=3)
    here = SqliteOrderStore(platform.records_db)  # this node's view; the app is the other node
    await here.load()
    assert {o.id for o in here.live()} == {kept["id"], cancelled["id"]}
    assert _held_by_memory(platform) == {r: n for r, n in here.held.items() if n}
    quote = await (await client.post(f"/v1/orders/{cancelled['id']}/cancellations", headers=customer_headers)).json()
    assert (await client.post(f"/v1/orders/{cancelled['id']}/cancellations/{quote['id']}/confirm",
                              headers=customer_headers)).status == 200
    assert await here.refresh([cancelled["id"], kept["id"]]) == 2
    assert {o.id for o in here.live()} == {kept["id"]}
    assert {r: n for r, n in here.held.items() if n} == _held_by_memory(platform) == {f"{kept['flight_id']}/economy": 2}
    assert (await here.fetch(cancelled["id"])).state == "CANCELLED"
