"""A start is ready before the live orders are loaded (they load in the background, `warm_up`): a retail request
meanwhile waits for them, so it sees every seat they hold, and an accept never sells a seat a loaded order holds;
the order list, read from the store, is answered meanwhile, and so is a profile lookup (the ids load after)."""

import asyncio

import msgspec

from app.main import PLATFORM, create_app
from state.profiles import Profile
from tests.integration.retail.helpers import accept, booked, search, seats_left


async def test_requests_during_the_live_orders_load_wait_for_it(shop, clock, config, aiohttp_client,
                                                                 customer_headers):
    client, _ = shop
    await client.app[PLATFORM].profiles.put(Profile("traveller-1", segments=[3], updated_at=clock.now()))
    held = [await booked(client, customer_headers, clock, passengers=n) for n in (2, 3)]
    offer = next(o for o in await search(client, customer_headers, clock, passengers=4)
                 if o["bundle"] == "flight_only")
    seats = await seats_left(client, clock)
    await client.close()

    app = create_app(config, clock=clock)
    store = app[PLATFORM].order_store
    load, started, go_on = store._load_live, asyncio.Event(), asyncio.Event()

    async def paused_load() -> None:
        started.set()
        await go_on.wait()
        await load()

    store._load_live = paused_load  # type: ignore[method-assign]
    client = await aiohttp_client(app)
    await started.wait()
    ready = await client.get("/health/ready")
    assert ready.status == 200 and (await ready.json())["tasks"]["warm_up"] == "running"
    assert len(store) == 0
    # The profile ids load after the live orders: meanwhile a stored profile is read from the store.
    assert list((await app[PLATFORM].profiles.get("traveller-1")).segments) == [3]
    # Waiting: the seats the live orders hold are not known yet, nor whether the accept fits.
    waiting_seats = asyncio.ensure_future(seats_left(client, clock))
    waiting_accept = asyncio.ensure_future(accept(client, customer_headers, offer["id"]))
    # The order list reads the store: answered now, every order in it.
    listed = await client.get("/v1/orders", headers=customer_headers)
    assert listed.status == 200 and [o["id"] for o in (await listed.json())["items"]] == [o["id"] for o in held]
    await asyncio.sleep(0.2)
    assert not waiting_seats.done() and not waiting_accept.done()
    go_on.set()
    assert await waiting_seats in (seats, seats - 4)  # before or after the accept, never without the held seats
    accepted = await waiting_accept
    assert accepted.status == 201, await accepted.text()
    assert await seats_left(client, clock) == seats - 4
    assert {o.id for o in store.live()} == {o["id"] for o in held} | {(await accepted.json())["id"]}
    for _ in range(100):
        if (await (await client.get("/health/ready")).json())["tasks"]["warm_up"] == "finished":
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("warm_up did not finish")


async def test_a_failed_load_is_retried_from_nothing(shop, clock, config, aiohttp_client, customer_headers):
    """A load that fails midway is retried by the warm-up task; its holds are counted once."""
    client, _ = shop
    await booked(client, customer_headers, clock, passengers=2)
    seats = await seats_left(client, clock)
    await client.close()

    config = msgspec.structs.replace(config, tasks=msgspec.structs.replace(config.tasks, restart_backoff_s=0.01))
    app = create_app(config, clock=clock)
    store = app[PLATFORM].order_store
    load, attempts = store._load_live, []

    async def failing_once() -> None:
        await load()  # everything read and held, then the failure
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk I/O error")

    store._load_live = failing_once  # type: ignore[method-assign]
    client = await aiohttp_client(app)
    assert await seats_left(client, clock) == seats  # waited for the second, whole load
    assert len(attempts) == 2 and len(store) == 1
