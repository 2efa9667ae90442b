"""The simulator shops through the real app: guest searches, the traveller's choice drawn from the hidden truth,
accepts and payments, each logged with the true acceptance probability of every offer shown."""

import io
import json
import time

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
    assert summary.errors == 0 and summary.searches == 40 and summary.events == 40
    assert 0 < summary.paid <= summary.accepts < summary.searches  # some browse and leave, some pay

    searches = [x for x in map(json.loads, log.getvalue().splitlines()) if "search_id" in x]
    assert len(searches) == 40 and all(x["offers"] for x in searches)
    for x in searches:
        traveller = sim.population.by_id[x["user_id"]]
        assert x["segment"] == search_segment(traveller)
        assert all(0 < o["p_accept"] < 1 for o in x["offers"])
        if x["accepted"]:  # only one of the offers a traveller considers
            assert x["accepted"] in [o["offer_id"] for o in x["offers"][:CONSIDERED]]
    # Each search's destination view went through ingest: the server's recency for the traveller is what the
    # simulator's truth clicks on.
    await platform.ingest.flush_profiles()
    shopper = sim.population.by_id[searches[-1]["user_id"]]
    held = await platform.profiles.get(shopper.user_id)
    now = time.time()
    server_recency = 1.0 / (1.0 + max(0.0, now - held.last_seen) / 86_400)
    assert abs(server_recency - sim.recency(shopper.index, now)) < 1e-6 and server_recency > 0.999
    # What the server holds: the accepted offers' orders, paid exactly where the log says so.
    for x in (x for x in searches if x["order_id"]):
        order = platform.order_store.get(x["order_id"])
        assert order.offer_id == x["accepted"]
        assert (order.state in ("PAID", "FULFILLED")) == x["paid"]


async def test_members_shop_signed_in_and_their_mail_comes_back_opened_and_clicked(aiohttp_client, tmp_path):
    """With the mailbox to read, members (tier above Blue) register and shop as customers; each paid order's
    confirmation reaches the embedded sink, and the simulator reports it delivered, opened and clicked as its truth
    decides, in SendGrid's webhook form: the email analytics count exactly that."""
    client = await _client(aiohttp_client, tmp_path, SystemClock(), smtp__port=0, smtp__embedded_sink="true",
                           sendgrid__allow_unsigned="true", **LIMITS)
    platform = client.app[PLATFORM]
    await load_catalog(platform)
    _, admin = await platform.api_keys.create("sim", "admin")
    log = io.StringIO()
    sim = Simulator(6, f"http://127.0.0.1:{client.port}", admin, mail_key=admin, log=log)
    summary = await sim.run(rate=5, seconds=6, search_rate=40)
    assert summary.errors == 0 and summary.paid > 0
    orders = [platform.order_store.get(x["order_id"]) for x in map(json.loads, log.getvalue().splitlines())
              if x.get("order_id")]
    owners = {o.owner.partition(":")[2] for o in orders if o.owner.startswith("user:")}
    assert owners  # some orders were members' (a quarter of travellers are Gold or Reserve), as customers
    assert all(platform.account_store.get(a).email.endswith("@sim.contrail.example") for a in owners)
    report = await (await client.get("/v1/channels/email/analytics", headers={"X-Api-Key": admin})).json()
    assert 0 < summary.mails <= report["sent"] == report["delivered"]  # the embedded sink took them all
    assert report["opens"] == summary.opens and report["clicks"] == summary.mail_clicks
    assert 0 < summary.opens < summary.mails  # the truth opens some mail, not all
