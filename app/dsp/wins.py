"""The DSPs' wins and spend: the bids routed to the exchange, their win and billing notices, recorded once per bid.

Record, then forward: each DSP bid in an answer gets an id of Contrail's own (DSPs' bid ids need not be unique
across auctions) and its `burl` (and its `nurl` when the bid carries its markup) point at
`GET /v1/dsp/notices/{win|billing}`; when the exchange calls one, or posts `POST /v1/dsp/win`, the win is made
durable first (one row per platform and bid: repeats change nothing), then the DSP's own URL is called in the
background with the OpenRTB macros substituted. A bid without `adm` keeps the DSP's nurl (its markup is served by
the win notice, which the exchange must reach directly); its win is recorded from its billing notice or the API.
Issued bids are remembered for `bidding.bid_ttl_s`; notices for a bid Contrail never issued, or has forgotten, are
refused (404) unless that win is already recorded (then a repeat).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgspec

from app.bidding.openrtb import Bid
from app.dsp.ports import DspAdapter, DspError, DspWinStore
from app.errors import InvalidInput, NotFound
from app.runtime.clock import Clock
from app.runtime.lru import LRU
from app.runtime.metrics import Metrics
from state.dsp import DspWin, RoutedBid
from state.ports import SharedDspBids, StorageUnavailable

log = logging.getLogger("contrail.dsp")
MICROS = 1_000_000
FORWARD_TIMEOUT_S = 2.0
MAX_FORWARDS_IN_FLIGHT = 1024


@dataclass
class IssuedBid:
    bid: RoutedBid
    forwarded: set[str] = field(default_factory=set)  # which of its notices this node forwarded (nurl, burl)


class WinResult(msgspec.Struct):
    platform: str
    bid_id: str
    recorded: bool               # False: a repeat; nothing changed
    spend_micros: int


class DspWins:
    def __init__(self, store: DspWinStore, adapters: dict[str, DspAdapter], clock: Clock, metrics: Metrics,
                 notice_base: Callable[[], str], *, currency: str, ttl_s: float,
                 shared: SharedDspBids | None = None, campaign_of: Callable[[str, str], str | None] | None = None,
                 log_event: Callable[[str, Any], bool] | None = None, max_live_bids: int = 1_000_000) -> None:
        self._store = store
        # A DSP bid whose `cid` is a Contrail campaign's line item on that DSP is logged with the campaign, as its win
        # is: the campaign's report counts both (app/campaigns/reports.py).
        self._campaign_of = campaign_of
        self._log_event = log_event
        # Several nodes: the bids answered with are shared (share_issued), so a notice is accepted by any node,
        # and each of the DSP's own notices is forwarded by one node only.
        self._shared = shared
        self._unshared: list[RoutedBid] = []
        self._adapters = adapters
        self._clock = clock
        self._metrics = metrics
        self._notice_base = notice_base
        self._currency = currency
        self._ttl_s = ttl_s
        # The bids answered with, until they expire (`bidding.max_live_bids` at most: past it the oldest go first, and
        # their notices find no bid, as the bid ledger's do); exported as a cache (`dsp_issued_bids`).
        self.issued: LRU[tuple[str, str], IssuedBid] = LRU(max_live_bids, "dsp_issued_bids")
        self._forwards: set[asyncio.Task] = set()

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(12)

    def issue(self, platform: str, bid: Bid, request_id: str, price: float) -> Bid:
        """The bid as the exchange gets it: Contrail's id, the adjusted price, notice URLs that reach us first."""
        bid_id = self.new_id()
        campaign_id = (self._campaign_of(platform, bid.cid) if bid.cid and self._campaign_of else None) or ""
        routed = RoutedBid(platform, bid_id, bid.id, request_id, bid.impid, price, bid.nurl, bid.burl,
                           self._clock.now() + self._ttl_s, campaign_id)
        if campaign_id and self._log_event is not None:
            self._log_event("DspBid", {"bid_id": bid_id, "campaign_id": campaign_id, "platform": platform,
                                       "price": price})
        self.issued.put((platform, bid_id), IssuedBid(routed))
        if self._shared is not None:
            self._unshared.append(routed)
        base = f"{self._notice_base().rstrip('/')}/v1/dsp/notices"
        query = f"?platform={quote(platform)}&bid={bid_id}&price=${{AUCTION_PRICE}}"
        nurl = f"{base}/win{query}" if bid.adm else bid.nurl
        return msgspec.structs.replace(bid, id=bid_id, price=price, nurl=nurl, burl=f"{base}/billing{query}")

    async def share_issued(self) -> None:
        """Several nodes: share the bids issued since the last call (before the answer goes out)."""
        if self._shared is None or not self._unshared:
            return
        routed, self._unshared = self._unshared, []
        try:
            await self._shared.remember(routed)
        except StorageUnavailable:  # their notices still land on this node
            log.warning("DSP bids not shared (Redis unavailable): their notices must reach this node",
                        extra={"bids": len(routed)})

    def sweep(self) -> None:
        now = self._clock.now()
        # The least recently issued (or found) first, so a sweep reads only what it forgets. A bid found for a notice
        # moves behind the ones issued since, so it may go a sweep or two later (`win` drops it once expired).
        while (oldest := self.issued.oldest()) is not None and oldest[1].bid.expires_at <= now:
            self.issued.pop(oldest[0])

    async def win(self, platform: str, bid_id: str, win_price: float | str | None, source: str) -> WinResult:
        """Record a win at the clearing CPM `win_price` (bidding currency); forward the DSP's own notices."""
        if platform not in self._adapters:
            raise NotFound(f"no DSP named {platform!r}")
        issued = self.issued.get((platform, bid_id))
        if issued is not None and issued.bid.expires_at <= self._clock.now():
            self.issued.pop((platform, bid_id))  # expired, not swept yet
            issued = None
        if issued is None and self._shared is not None:
            routed = await self._shared.find(platform, bid_id)  # answered by another node
            if routed is not None:
                issued = IssuedBid(routed)
                self.issued.put((platform, bid_id), issued)
        if issued is None:
            earlier = await self._store.get(platform, bid_id)
            if earlier is None:
                raise NotFound(f"no bid {bid_id!r} of {platform!r} is known (unknown or expired)")
            return WinResult(platform, bid_id, False, earlier.spend_micros)
        price = _price(win_price)
        if price > issued.bid.price + 1e-9:
            raise InvalidInput(f"the win price {price} is above the bid's {issued.bid.price}")
        cpm_micros = int(round(price * MICROS))
        win = DspWin(platform, bid_id, cpm_micros, cpm_micros // 1000, self._clock.now(), source)
        recorded = await self._store.record(win)
        if recorded:
            self._metrics.dsp_wins.labels(platform).inc()
            self._metrics.dsp_spend.labels(platform).inc(win.spend_micros)
            if issued.bid.campaign_id and self._log_event is not None:
                self._log_event("DspWin", {"bid_id": bid_id, "campaign_id": issued.bid.campaign_id,
                                           "platform": platform, "price_micros": cpm_micros})
        kinds = {"nurl": ("nurl",), "burl": ("burl",)}.get(source, ("nurl", "burl"))
        for kind in kinds:
            self._forward(issued, kind, price)
        return WinResult(platform, bid_id, recorded, win.spend_micros)

    def _forward(self, issued: IssuedBid, kind: str, price: float) -> None:
        """Call the DSP's own nurl or burl once per bid, in the background."""
        bid = issued.bid
        url = bid.nurl if kind == "nurl" else bid.burl
        if not url or kind in issued.forwarded:
            return
        issued.forwarded.add(kind)
        forwarded = self._metrics.dsp_forwarded
        if len(self._forwards) >= MAX_FORWARDS_IN_FLIGHT:
            forwarded.labels(bid.platform, "dropped").inc()
            return
        macros = {"${AUCTION_PRICE}": f"{price:.6f}".rstrip("0").rstrip("."), "${AUCTION_ID}": bid.request_id,
                  "${AUCTION_BID_ID}": bid.dsp_bid_id, "${AUCTION_IMP_ID}": bid.impid,
                  "${AUCTION_SEAT_ID}": bid.platform, "${AUCTION_CURRENCY}": self._currency}
        for macro, value in macros.items():
            url = url.replace(macro, quote(value, safe=""))
        adapter = self._adapters[bid.platform]
        shared = self._shared

        async def call() -> None:
            try:
                if shared is not None and not await shared.claim_forward(bid.platform, bid.bid_id, kind):
                    return  # another node forwarded it
                status = await adapter.notify(url, FORWARD_TIMEOUT_S)
                forwarded.labels(bid.platform, "ok" if status < 400 else "failed").inc()
            except (DspError, TimeoutError, StorageUnavailable) as exc:
                forwarded.labels(bid.platform, "failed").inc()
                log.info("DSP notice not delivered", extra={"platform": bid.platform, "error": str(exc)[:200]})

        task = asyncio.create_task(call())
        self._forwards.add(task)
        task.add_done_callback(self._forwards.discard)

    async def drain(self) -> None:
        """Wait for the notices being forwarded."""
        if self._forwards:
            await asyncio.wait(set(self._forwards), timeout=FORWARD_TIMEOUT_S)


def _price(value: float | str | None) -> float:
    """A clearing CPM from the API or a notice URL: finite and >= 0; an unsubstituted macro is refused."""
    try:
        price = float(value) if value is not None else math.nan
    except ValueError:
        raise InvalidInput(f"the win price {str(value)[:40]!r} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise InvalidInput("the win price must be a finite number >= 0")
    return price
