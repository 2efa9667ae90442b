"""The candidates of bid request shapes: held within their byte budget, untouched by block lists, and following
each campaign edit and each charge at once, on every protocol."""

import json
import random
import re

from grpclib.client import Channel

from app.main import GRPC, PLATFORM
from handlers.rpc import bidding_grpc, bidding_pb2
from state.campaigns import Creative
from tests.integration.bidding.helpers import _client, banner_request, post_bid, single_campaign


async def _metric(client, name: str, cache: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(rf'^{name}{{cache="{cache}"}} (\S+)$', text, re.M)
    assert found, f"{name} for {cache} is not exported"
    return float(found.group(1))


async def _bids(client, body) -> list[dict]:
    resp = await post_bid(client, body)
    assert resp.status in (200, 204)
    return [] if resp.status == 204 else [b for s in (await resp.json())["seatbid"] for b in s["bid"]]


async def test_many_request_shapes_stay_within_the_byte_budget(aiohttp_client, tmp_path, clock):
    sizes = [(100 + 10 * n, 50 + n) for n in range(30)]
    campaigns = [single_campaign(id=f"c{i}", bid_cap_micros=1_000_000 + i, creatives=[
        Creative("c", "banner", "<b>", w=300, h=250), Creative("s", "banner", "<s>", w=sizes[i % 30][0],
                                                              h=sizes[i % 30][1])]) for i in range(300)]
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=campaigns, bidding__shape_cache_mb="1")
    budget = await _metric(client, "contrail_cache_budget_bytes", "bid_shapes")
    assert budget == 1 << 20
    rng = random.Random(5)
    for i in range(150):  # nearly every request a new shape: two of the campaigns' other sizes beside 300x250
        body = banner_request(request_id=f"r{i}", user_id=f"u{i}", floor=0.01)
        body["imp"][0]["banner"]["format"] = [{"w": w, "h": h} for w, h in rng.sample(sizes, 2)]
        assert await _bids(client, body), "the campaigns bid on every shape, cached or not"
        if i % 25 == 0:
            assert await _metric(client, "contrail_cache_bytes", "bid_shapes") <= budget
    held = await _metric(client, "contrail_cache_bytes", "bid_shapes")
    assert 0 < held <= budget
    assert await _metric(client, "contrail_cache_evictions_total", "bid_shapes") > 0
    entries = await _metric(client, "contrail_cache_entries", "bid_shapes")
    assert 1 < entries < 150
    # Sizes no creative has match nothing: offering them makes no new shape.
    for i in range(20):
        body = banner_request(request_id=f"n{i}", user_id="u1", floor=0.01)
        body["imp"][0]["banner"]["format"] = [{"w": 300, "h": 250}, {"w": 5000 + i, "h": 7}]
        assert await _bids(client, body)
    assert await _metric(client, "contrail_cache_entries", "bid_shapes") <= entries + 1


async def test_block_lists_cost_no_new_shapes_and_block_what_they_name(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[
        single_campaign(id="news", categories=["IAB12"], advertiser_domain="news.example"),
        single_campaign(id="game", categories=["IAB9"], advertiser_domain="contrail.example", app_bundle="com.game"),
        single_campaign(id="shop", categories=["IAB22"], advertiser_domain="shop.example")])
    rng = random.Random(3)
    junk = [f"IAB{n}-{m}" for n in range(1, 27) for m in range(1, 5)]
    for i in range(60):
        blocks = {"bcat": rng.sample(junk, rng.randint(0, 12)), "badv": [f"ads{rng.randint(0, 10**6)}.example"],
                  "bapp": [f"com.app{rng.randint(0, 10**6)}"]}
        shut = rng.choice([None, ("bcat", "IAB12", "news"), ("badv", "shop.example", "shop"),
                           ("bapp", "com.game", "game")])
        if shut is not None:
            blocks[shut[0]].append(shut[1])
        bids = await _bids(client, banner_request(request_id=f"r{i}", user_id=f"u{i}", floor=0.01, **blocks))
        assert len(bids) == 1
        assert shut is None or bids[0]["adid"] != shut[2]
    # Two of them shut out, by any of the three lists, leaves the third.
    for left, blocks in (("shop", {"bcat": ["IAB12", "x"], "bapp": ["com.game"]}),
                         ("news", {"badv": ["shop.example", "contrail.example"]}),
                         ("game", {"bcat": ["IAB22", "IAB12"], "badv": ["y.example"]})):
        bids = await _bids(client, banner_request(request_id=f"two-{left}", floor=0.01, **blocks))
        assert [b["adid"] for b in bids] == [left]
    assert await _metric(client, "contrail_cache_entries", "bid_shapes") == 1
    everything = {"bcat": ["IAB12", "IAB9", "IAB22"]}
    assert await _bids(client, banner_request(request_id="all", floor=0.01, **everything)) == []


async def test_an_edit_changes_that_campaigns_bids_at_once_on_every_protocol(aiohttp_client, tmp_path, clock):
    others = [single_campaign(id=f"other{i}", creatives=[Creative("o", "banner", "<o>", w=728, h=90)])
              for i in range(20)]
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[single_campaign(id="edited"), *others])
    service = client.app[PLATFORM].campaigns
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    stub, md = bidding_grpc.BiddingServiceStub(channel), {"x-api-key": client.headers["X-Api-Key"]}
    ws = await client.ws_connect(f"/v1/stream/bids?api_key={client.headers['X-Api-Key']}")
    wide = {"id": "1", "bidfloor": 0.01, "banner": {"format": [{"w": 728, "h": 90}]}}

    async def prices(request: dict) -> dict[str, list[tuple[str, float]]]:
        """The bids for `request` over REST, gRPC and the websocket stream: (campaign, price) each."""
        rest = await _bids(client, request)
        reply = await stub.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=json.dumps(request)), metadata=md)
        grpc = [b for s in json.loads(reply.openrtb_json).get("seatbid", []) for b in s["bid"]]
        await ws.send_str(json.dumps(request))
        got = await ws.receive_json(timeout=2)
        stream = [b for s in (got["response"] or {}).get("seatbid", []) for b in s["bid"]] if got["has_bid"] else []
        return {name: [(b["adid"], b["price"]) for b in bids] for name, bids in
                (("rest", rest), ("grpc", grpc), ("websocket", stream))}

    try:
        request = banner_request(request_id="e", user_id="u1", floor=0.01)
        other_request = banner_request(request_id="o", user_id="u1", floor=0.01, imp=[wide])
        before, others_before = await prices(request), await prices(other_request)
        assert all(bids and bids[0][0] == "edited" and bids[0][1] >= 1.25 for bids in before.values()), before
        # Its bid cap from 5.00 to 1.00: its price is at most the new cap from the next request on.
        await service.replace(single_campaign(id="edited", bid_cap_micros=1_000_000))
        after = await prices(request)
        assert all(bids and bids[0][0] == "edited" and bids[0][1] <= 1.0 for bids in after.values()), after
        assert await prices(other_request) == others_before  # no other campaign's bid changed
        await service.replace(single_campaign(id="edited", state="paused"))
        assert await prices(request) == {"rest": [], "grpc": [], "websocket": []}
        assert await prices(other_request) == others_before
        await service.replace(single_campaign(id="edited", bid_cap_micros=2_000_000))  # live again, cap 2.00
        again = await prices(request)
        assert all(bids and bids[0][0] == "edited" and 0.5 <= bids[0][1] <= 2.0 for bids in again.values()), again
        assert await prices(other_request) == others_before
    finally:
        await ws.close()
        channel.close()


async def test_a_charge_closes_its_campaign_at_once(aiohttp_client, tmp_path, clock):
    clock._now = clock.now() - clock.now() % 86_400 + 23 * 3600  # 23:00 UTC: pacing opens the whole budget
    # 6,000 micros a day and a 5.00 cap: one impression at the cap (5,000) fits; after a charge of 1,200 it does not.
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[
        single_campaign(id="small", daily_budget_micros=6_000),
        single_campaign(id="large", creatives=[Creative("l", "banner", "<l>", w=728, h=90)])])
    base = f"http://127.0.0.1:{client.port}"
    bids = await _bids(client, banner_request(request_id="a", floor=0.01))
    assert [b["adid"] for b in bids] == ["small"]
    # Billed at 1.20 CPM (its bid was at least a quarter of its 5.00 cap): 1,200 micros, and 5,000 more would
    # pass its day's 6,000.
    billing = bids[0]["burl"].removeprefix(base).replace("${AUCTION_PRICE}", "1.20")
    assert (await client.get(billing)).status == 200
    assert await _bids(client, banner_request(request_id="b", floor=0.01)) == []
    wide = {"id": "1", "bidfloor": 0.01, "banner": {"w": 728, "h": 90}}
    assert [b["adid"] for b in await _bids(client, banner_request(request_id="c", imp=[wide]))] == ["large"]
    clock.advance(86_400)  # a new day: its budget again
    assert [b["adid"] for b in await _bids(client, banner_request(request_id="d", floor=0.01))] == ["small"]
