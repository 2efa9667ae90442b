"""Local aiohttp servers posing as DSPs (bidding, slow, failing, malformed JSON) and the real app routing to them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.main import PLATFORM, create_app
from tests.conftest import CONFORMANCE, make_config

SIMPLE_BANNER = (CONFORMANCE / "openrtb" / "ortb26_req_ex1_simple_banner.json").read_bytes()


@dataclass
class FakeDsp:
    """One fake DSP: how it answers, and what it was sent."""
    behaviour: str                       # bid, slow, fail, malformed, nobid
    price: float = 2.0
    delay_s: float = 0.0
    cid: str | None = None               # the campaign id its bids carry (OpenRTB `cid`)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    notices: list[dict[str, str]] = field(default_factory=list)
    # How its notice URL answers: these statuses first, one a call, then `notice_status` (the answered are noted)
    notice_statuses: list[int] = field(default_factory=list)
    notice_status: int = 200
    answered: list[int] = field(default_factory=list)
    notice_url: str | None = None        # the nurl/burl its bids carry instead of its own /notice
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/bid"))

    async def bid(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.delay_s or self.behaviour == "slow":
            await asyncio.sleep(self.delay_s or 0.5)
        if self.behaviour == "fail":
            return web.Response(status=500, text="upstream exploded")
        if self.behaviour == "malformed":
            return web.Response(status=200, text='{"id": "x", "seatbid": [', content_type="application/json")
        if self.behaviour == "nobid":
            return web.Response(status=204)
        base = self.notice_url or (str(self.server.make_url("/notice")) if self.server else "")
        bids = [{"id": f"b{i}", "impid": imp["id"], "price": self.price, "adm": "<a>dsp ad</a>", "crid": "cr1",
                 "adomain": ["dsp.example"], "w": 300, "h": 250, "mtype": 1,
                 "nurl": f"{base}?kind=nurl&price=${{AUCTION_PRICE}}&bid=${{AUCTION_BID_ID}}",
                 "burl": f"{base}?kind=burl&price=${{AUCTION_PRICE}}&bid=${{AUCTION_BID_ID}}&imp=${{AUCTION_IMP_ID}}"}
                for i, imp in enumerate(body["imp"])]
        if self.cid is not None:
            for bid in bids:
                bid["cid"] = self.cid
        return web.json_response({"id": body["id"], "cur": "USD", "seatbid": [{"seat": "9", "bid": bids}]})

    async def notice(self, request: web.Request) -> web.Response:
        self.notices.append(dict(request.query))
        status = self.notice_statuses.pop(0) if self.notice_statuses else self.notice_status
        self.answered.append(status)
        return web.Response(status=status)


async def start_dsp(behaviour: str, **kw: Any) -> FakeDsp:
    dsp = FakeDsp(behaviour, **kw)
    app = web.Application()
    app.router.add_post("/bid", dsp.bid)
    app.router.add_get("/notice", dsp.notice)
    dsp.server = TestServer(app)
    await dsp.server.start_server()
    return dsp


@pytest.fixture
async def fake_dsps():
    started: list[FakeDsp] = []

    async def make(behaviour: str, **kw: Any) -> FakeDsp:
        dsp = await start_dsp(behaviour, **kw)
        started.append(dsp)
        return dsp
    yield make
    for dsp in started:
        assert dsp.server is not None
        await dsp.server.close()


def platforms(**dsps: tuple[FakeDsp, dict[str, Any]] | FakeDsp) -> str:
    rows = []
    for name, value in dsps.items():
        dsp, extra = value if isinstance(value, tuple) else (value, {})
        rows.append({"name": name, "url": dsp.url, **extra})
    return json.dumps(rows)


async def router_client(aiohttp_client, tmp_path, clock, dsps: str, **overrides: Any):
    """The real app with those DSPs, and an exchange key in `client.headers`."""
    overrides = {"dsp__platforms": dsps, "dsp__debug": "true", "dsp__include_own_bidder": "false", **overrides}
    client = await aiohttp_client(create_app(make_config(tmp_path, **overrides), clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("exchange", "exchange")
    client.headers = {"X-Api-Key": key}
    return client


async def post_bid(client, body: bytes | dict, **headers: str):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return await client.post("/v1/dsp/bid", data=data, headers={**client.headers, **headers})


async def until(condition, timeout_s: float = 5.0) -> None:
    """Wait for `condition()` (what a DSP was sent, in the background) to hold."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")

