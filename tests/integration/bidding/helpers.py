"""Shared set-up for the bidding tests: the real app with the demo campaigns and an exchange key, OpenRTB
requests to send it, and the rules a bid response must meet."""

import json

from app.demo import demo_campaigns
from app.main import PLATFORM, create_app
from state.campaigns import Campaign, Creative
from tests.conftest import CONFORMANCE, make_config

REQUESTS = sorted((CONFORMANCE / "openrtb").glob("ortb26_req_*.json"))
RATES = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}


def banner_request(request_id="r1", user_id="u1", floor=0.5, **extra):
    body = {"id": request_id, "imp": [{"id": "1", "bidfloor": floor, "banner": {"w": 300, "h": 250}}],
            "site": {"id": "s", "domain": "news.example"}, "user": {"id": user_id}, "tmax": 200}
    body.update(extra)
    return body


async def _client(aiohttp_client, tmp_path, clock, campaigns=None, **overrides):
    client = await aiohttp_client(create_app(make_config(tmp_path, **overrides), clock=clock))
    platform = client.app[PLATFORM]
    for campaign in demo_campaigns() if campaigns is None else campaigns:
        await platform.campaigns.create("test", campaign, audit=False)
    _, key = await platform.api_keys.create("exchange", "exchange")
    client.headers = {"X-Api-Key": key}
    return client


async def post_bid(client, body, **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await client.post("/v1/bid", data=data, headers={**client.headers, **headers})


def check_response(request: dict, response: dict) -> None:
    """The OpenRTB 2.6 rules a bid response must satisfy for its request."""
    assert response["id"] == request["id"]
    assert response["cur"] == "USD" and response["bidid"]
    imps = {imp["id"]: imp for imp in request["imp"]}
    for seatbid in response["seatbid"]:
        assert seatbid["seat"] and seatbid["bid"]
        for bid in seatbid["bid"]:
            imp = imps[bid["impid"]]
            assert bid["id"] and bid["price"] > 0 and bid["adid"] and bid["crid"] and bid["adm"]
            assert bid["adomain"] == ["contrail.example"]
            for url in ("nurl", "burl", "lurl"):
                assert "${AUCTION_PRICE}" in bid[url]
            floor = imp.get("bidfloor", 0) * RATES[imp.get("bidfloorcur", "USD")]
            if "dealid" in bid:
                deal = next(d for d in imp["pmp"]["deals"] if d["id"] == bid["dealid"])
                floor = deal.get("bidfloor", 0) * RATES[deal.get("bidfloorcur", "USD")]
            else:
                assert imp.get("pmp", {}).get("private_auction", 0) == 0
            assert bid["price"] >= floor - 1e-6
            if "banner" in imp and bid["mtype"] == 1:
                b = imp["banner"]
                sizes = [(f["w"], f["h"]) for f in b.get("format", [])] + ([(b["w"], b["h"])] if "w" in b else [])
                assert not sizes or (bid["w"], bid["h"]) in sizes
            assert bid["mtype"] in (1, 2, 3, 4)


def single_campaign(**kw) -> Campaign:
    fields = dict(id="only", name="x", advertiser_domain="contrail.example", bid_cap_micros=5_000_000, state="live",
                  daily_budget_micros=10**12, creatives=[Creative("c", "banner", "<b>", w=300, h=250)])
    fields.update(kw)
    return Campaign(**fields)


async def _price(client, body):
    resp = await post_bid(client, body)
    assert resp.status == 200
    return (await resp.json())["seatbid"][0]["bid"][0]["price"]


async def _admin(client):
    from tests.conftest import ADMIN, bearer
    return await bearer(client, *ADMIN, "admin")


BANNER = {"banner": {"w": 300, "h": 250}}
VIDEO = {"mimes": ["video/mp4"], "w": 640, "h": 480}
AUDIO = {"mimes": ["audio/mp4"]}
NATIVE = {"request": '{"ver":"1.2","assets":[{"id":1,"required":1,"title":{"len":90}}]}', "ver": "1.2"}
SCHAIN = {"complete": 1, "ver": "1.0", "nodes": [{"asi": "exchange.example", "sid": "pub-1", "hp": 1}]}


def bid_request(imp=None, **top):
    """A request the demo campaigns bid on, with the imp's media replaced by `imp` and `top` merged in."""
    body = {"id": "r1", "imp": [{"id": "1", "bidfloor": 0.5, **(BANNER if imp is None else imp)}],
            "site": {"id": "s", "domain": "news.example"}, "user": {"id": "u1"}, "tmax": 200}
    body.update(top)
    return body
