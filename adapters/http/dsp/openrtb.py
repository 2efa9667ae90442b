"""The generic OpenRTB 2.6 DSP adapter, and the HTTP session every DSP adapter shares.

Shaped after Prebid Server's bidder adapters: `make_requests` turns the exchange's request into the HTTP requests
for this DSP (here one POST of the request as received, with `tmax` set to the DSP's own deadline), and
`make_bids` reads the bids from an answer: 204, or 200 without seatbid, is a no-bid; another status, a body that is
not JSON, or a response that breaks OpenRTB (no `id`, a bid without `id`, `impid` or a finite non-negative
`price`) raises DspError. The caller (app/dsp/router.py) bounds each call with the DSP's deadline and breaker.

Auth: `auth_header` set: that header carries `auth_token`; empty with a token: `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import msgspec

from adapters.tls import http_client_ssl
from app.bidding.openrtb import Bid
from app.config import DspPlatform
from app.dsp.ports import DspBid, DspError, OutboundCall
from app.runtime.tracing import http_trace_configs


class _Bid(Bid):
    """A DSP's bid as it comes: our Bid, and the `ext` some platforms put their price or ids in. A `cid` sent as a
    number (OpenRTB says string) is read as its text rather than failing the whole answer."""
    ext: dict[str, Any] | None = None
    cid: str | int | None = None  # type: ignore[assignment]


class _SeatBid(msgspec.Struct):
    bid: list[_Bid] = []
    seat: str | None = None


class _Response(msgspec.Struct):
    id: str
    seatbid: list[_SeatBid] | None = None
    cur: str | None = None
    nbr: int | None = None


_decode_response = msgspec.json.Decoder(_Response).decode
_encode = msgspec.json.Encoder().encode


class DspSession:
    """One aiohttp session (and so one pool of kept-alive connections) for every DSP, opened on first use."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No limit on connections: each DSP call is bounded by its deadline, not by a pool queue.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300,
                                                                                 ssl=http_client_ssl()),
                                                  skip_auto_headers=("User-Agent",), trace_configs=http_trace_configs())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class OpenRtbDsp:
    """Any DSP that speaks plain OpenRTB 2.6 over HTTP POST."""

    kind = "openrtb"
    default_currency = "USD"   # when an answer names no `cur` (OpenRTB's default)
    openrtb_version = "2.6"

    def __init__(self, platform: DspPlatform, session: DspSession) -> None:
        self.platform = platform
        self.name = platform.name
        self._session = session
        self._headers = {"Content-Type": "application/json", "x-openrtb-version": self.openrtb_version,
                         **self.auth_headers()}

    def auth_headers(self) -> dict[str, str]:
        p = self.platform
        if not p.auth_token:
            return {}
        if p.auth_header:
            return {p.auth_header: p.auth_token}
        return {"Authorization": f"Bearer {p.auth_token}"}

    def endpoint(self, request: dict[str, Any]) -> str:
        return self.platform.url

    def shape_request(self, request: dict[str, Any], timeout_ms: int) -> dict[str, Any]:
        """The body to send: the request as received with this DSP's `tmax` (subclasses add their quirks)."""
        return {**request, "tmax": timeout_ms}

    def request_headers(self, request: dict[str, Any]) -> dict[str, str]:
        return self._headers

    def make_requests(self, request: dict[str, Any], timeout_ms: int) -> list[OutboundCall]:
        return [OutboundCall(self.endpoint(request), self.request_headers(request),
                             _encode(self.shape_request(request, timeout_ms)))]

    def read_price(self, bid: _Bid) -> float:
        """The bid's CPM in the answer's currency (a subclass whose DSP counts otherwise converts here)."""
        return bid.price

    def make_bids(self, request: dict[str, Any], status: int, body: bytes) -> list[DspBid]:
        if status == 204:
            return []
        if status != 200:
            raise DspError("http_status", f"HTTP {status}")
        if not body.strip():
            return []
        try:
            response = _decode_response(body)
        except msgspec.ValidationError as exc:
            raise DspError("invalid_response", str(exc)[:200]) from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise DspError("malformed_json", str(exc)[:200]) from None
        if request.get("id") is not None and response.id != request["id"]:
            raise DspError("invalid_response", "the response's id is not the request's")
        currency = (response.cur or self.default_currency).upper()
        bids: list[DspBid] = []
        for seatbid in response.seatbid or ():
            for b in seatbid.bid:
                price = self.read_price(b)
                if not b.id or not b.impid or not math.isfinite(price) or price < 0:
                    raise DspError("invalid_bid", f"bid {b.id!r}: needs an id, an impid and a price >= 0")
                cid = None if b.cid is None else str(b.cid)
                bids.append(DspBid(Bid(id=b.id, impid=b.impid, price=price, adid=b.adid, nurl=b.nurl, burl=b.burl,
                                       lurl=b.lurl, adm=b.adm, adomain=b.adomain, crid=b.crid, cid=cid, cat=b.cat,
                                       w=b.w, h=b.h, mtype=b.mtype, dealid=b.dealid), currency, b.ext or {}))
        return bids

    async def bid(self, request: dict[str, Any], timeout_ms: int) -> list[DspBid]:
        session = self._session.get()
        bids: list[DspBid] = []
        for call in self.make_requests(request, timeout_ms):
            try:
                async with session.post(call.url, data=call.body, headers=call.headers) as response:
                    body = await response.read()
                    status = response.status
            except aiohttp.ClientError as exc:
                raise DspError("connection", str(exc)[:200] or type(exc).__name__) from None
            bids += self.make_bids(request, status, body)
        return bids

    async def notify(self, url: str, timeout_s: float) -> int:
        try:
            async with self._session.get().get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                await response.read()
                return response.status
        except aiohttp.ClientError as exc:
            raise DspError("connection", str(exc)[:200] or type(exc).__name__) from None
