"""The simulator shops through the real app: guest searches, the traveller's choice drawn from the hidden truth,
accepts and payments, each logged with the true acceptance probability of every offer shown."""

import io
import json

from app.demo import load_catalog
from app.main import PLATFORM
from app.runtime.clock import SystemClock
from app.simulate import Simulator
from ml.sim.shopping import CONSIDERED, search_segment
from tests.integration.bidding.helpers import _client

LIMITS = dict(ratelimit__ip_per_s=100_000, ratelimit__ip_burst=100_000)


async def test_simulated_travellers_search_accept_and_pay(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, SystemClock(), **LIMITS)
    platform = client.app[PLATFORM]
    await load_catalog(platform)
    _, exchange = await platform.api_keys.create("sim", "exchange")
    _, partner = await platform.api_keys.create("sim-profiles", "partner")
    log = io.StringIO()
    sim = Simulator(2, f"http://127.0.0.1:{client.port}", exchange, profile_key=partner, log=log)
    summary = await sim.run(rate=20, seconds=2, search_rate=20)
    assert summary.errors == 0 and summary.searches == 40
    assert 0 < summary.paid <= summary.accepts < summary.searches  # some browse and leave, some pay

    searches = [x for x in map(json.loads, log.getvalue().splitlines()) if "search_id" in x]
    assert len(searches) == 40 and all(x["offers"] for x in searches)
    for x in searches:
        traveller = sim.population.by_id[x["user_id"]]
        assert x["segment"] == search_segment(traveller)
        assert all(0 < o["p_accept"] < 1 for o in x["offers"])
        if x["accepted"]:  # only one of the offers a traveller considers
            assert x["accepted"] in [o["offer_id"] for o in x["offers"][:CONSIDERED]]
    # What the server holds: the accepted offers' orders, paid exactly where the log says so.
    for x in (x for x in searches if x["order_id"]):
        order = platform.order_store.get(x["order_id"])
        assert order.offer_id == x["accepted"]
        assert (order.state in ("PAID", "FULFILLED")) == x["paid"]
