"""The DSPs' wins and spend: the bids routed to the exchange, their win and billing notices, recorded once per bid.

Record, then forward: each DSP bid in an answer gets an id of Contrail's own (DSPs' bid ids need not be unique
across auctions) and its `burl` (and its `nurl` when the bid carries its markup) point at
`GET /v1/dsp/notices/{win|billing}`; when the exchange calls one, or posts `POST /v1/dsp/win`, the win is made
durable first (one row per platform and bid: repeats change nothing), and with it, in the same transaction, the
DSP's own URL to call with the OpenRTB macros substituted (`dsp_forwards`, once per bid and kind). It is called at
once in the background and, while the DSP fails (5xx, timeouts) or after a restart, by the relay every second with
backoff, until it answers or MAX_ATTEMPTS calls were made: at least once, on any node. A bid without `adm` keeps
the DSP's nurl (its markup is served by the win notice, which the exchange must reach directly); its win is
recorded from its billing notice or the API.
Issued bids are remembered for `bidding.bid_ttl_s`; notices for a bid Contrail never issued, or has forgotten, are
refused (404) unless that win is already recorded (then a repeat).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import msgspec
from yarl import URL

from app.bidding.openrtb import Bid
from app.dsp.ports import DspAdapter, DspError, DspWinStore
from app.errors import InvalidInput, NotFound
from app.runtime.clock import Clock
from app.runtime.lru import LRU
from app.runtime.metrics import Metrics
from state.dsp import DspForward, DspWin, RoutedBid
from state.ports import SharedDspBids, StorageUnavailable

log = logging.getLogger("contrail.dsp")
MICROS = 1_000_000
FORWARD_TIMEOUT_S = 2.0
MAX_FORWARDS_IN_FLIGHT = 1024  # calls at once; more wait in the queue for the relay
MAX_ATTEMPTS = 8  # calls of one notice, 1 s apart at first and doubling: the last about two minutes after the win
RELAY_BATCH = 256
PURGE_EVERY_S = 60.0  # the relay deletes finished rows this often (not a write every second on an idle node)
PURGE_BATCHES = 400  # rows deleted a purge, at most: 102,400 a minute, far above two notices a win
ABANDONED_S = 86_400  # a notice still queued a day after its win is for a DSP no node is configured with any more
MAX_URL = 8_192


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
        self.issued: LRU[tuple[str, str], RoutedBid] = LRU(max_live_bids, "dsp_issued_bids")
        self._forwards: set[asyncio.Task] = set()
        self._purged_at = -math.inf

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
        self.issued.put((platform, bid_id), routed)
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
        while (oldest := self.issued.oldest()) is not None and oldest[1].expires_at <= now:
            self.issued.pop(oldest[0])

    async def win(self, platform: str, bid_id: str, win_price: float | str | None, source: str) -> WinResult:
        """Record a win at the clearing CPM `win_price` (bidding currency); forward the DSP's own notices."""
        if platform not in self._adapters:
            raise NotFound(f"no DSP named {platform!r}")
        issued = self.issued.get((platform, bid_id))
        if issued is not None and issued.expires_at <= self._clock.now():
            self.issued.pop((platform, bid_id))  # expired, not swept yet
            issued = None
        if issued is None and self._shared is not None:
            issued = await self._shared.find(platform, bid_id)  # answered by another node
            if issued is not None:
                self.issued.put((platform, bid_id), issued)
        if issued is None:
            earlier = await self._store.get(platform, bid_id)
            if earlier is None:
                raise NotFound(f"no bid {bid_id!r} of {platform!r} is known (unknown or expired)")
            return WinResult(platform, bid_id, False, earlier.spend_micros)
        price = _price(win_price)
        if price > issued.price + 1e-9:
            raise InvalidInput(f"the win price {price} is above the bid's {issued.price}")
        cpm_micros = int(round(price * MICROS))
        win = DspWin(platform, bid_id, cpm_micros, cpm_micros // 1000, self._clock.now(), source)
        kinds = {"nurl": ("nurl",), "burl": ("burl",)}.get(source, ("nurl", "burl"))
        forwards = [f for kind in kinds if (f := self._forward_of(issued, kind, price)) is not None]
        recorded, queued = await self._store.record(win, forwards)
        if recorded:
            self._metrics.dsp_wins.labels(platform).inc()
            self._metrics.dsp_spend.labels(platform).inc(win.spend_micros)
            if issued.campaign_id and self._log_event is not None:
                self._log_event("DspWin", {"bid_id": bid_id, "campaign_id": issued.campaign_id,
                                           "platform": platform, "price_micros": cpm_micros})
        for forward in queued:
            if len(self._forwards) < MAX_FORWARDS_IN_FLIGHT:  # else the relay calls it
                task = asyncio.create_task(self._call(forward))
                self._forwards.add(task)
                task.add_done_callback(self._forwards.discard)
        return WinResult(platform, bid_id, recorded, win.spend_micros)

    def _forward_of(self, bid: RoutedBid, kind: str, price: float) -> DspForward | None:
        """The DSP's own nurl or burl for this win, its macros substituted. None when it gave none, or one that
        cannot be called or stored (never queued: counted failed)."""
        url = bid.nurl if kind == "nurl" else bid.burl
        if not url:
            return None
        macros = {"${AUCTION_PRICE}": f"{price:.6f}".rstrip("0").rstrip("."), "${AUCTION_ID}": bid.request_id,
                  "${AUCTION_BID_ID}": bid.dsp_bid_id, "${AUCTION_IMP_ID}": bid.impid,
                  "${AUCTION_SEAT_ID}": bid.platform, "${AUCTION_CURRENCY}": self._currency}
        for macro, value in macros.items():
            url = url.replace(macro, quote(value, safe=""))
        if (problem := _unusable(url)) is not None:
            self._metrics.dsp_forwarded.labels(bid.platform, "failed").inc()
            log.info("DSP notice URL unusable", extra={"platform": bid.platform, "kind": kind, "error": problem})
            return None
        return DspForward(bid.platform, bid.bid_id, kind, url)

    async def _call(self, forward: DspForward) -> None:
        """Call one queued notice if this caller claims it (one node, once at a time); then it is finished, or due
        again with backoff while the DSP fails. A node that dies during the call leaves it due once the claim
        lapses."""
        counted = self._metrics.dsp_forwarded
        adapter = self._adapters.get(forward.platform)
        if adapter is None:
            return  # a DSP this node is not configured with (yet): left to a node that is
        try:
            if not await self._store.claim_forward(forward, self._clock.now(), FORWARD_TIMEOUT_S + 1):
                return  # another caller has it, or it is finished
        except StorageUnavailable:
            return  # still queued
        claimed = msgspec.structs.replace(forward, attempts=forward.attempts + 1)
        retry: float | None = None
        try:
            status = await adapter.notify(forward.url, FORWARD_TIMEOUT_S)
            if status >= 500:
                raise DspError("http_error", f"status {status}")
            counted.labels(forward.platform, "ok" if status < 400 else "refused").inc()
        except (DspError, TimeoutError) as exc:
            if claimed.attempts < MAX_ATTEMPTS:
                retry = self._clock.now() + 2.0 ** (claimed.attempts - 1)
                counted.labels(forward.platform, "retried").inc()
            else:
                self._given_up(claimed, str(exc))
        except Exception as exc:  # anything else the call raised will not change on a retry
            self._given_up(claimed, f"{type(exc).__name__}: {exc}")
        try:
            await self._store.forward_done(claimed, retry)
        except StorageUnavailable:
            pass  # the claim lapses and it is called again: at least once

    def _given_up(self, forward: DspForward, error: str) -> None:
        self._metrics.dsp_forwarded.labels(forward.platform, "failed").inc()
        log.info("DSP notice not delivered", extra={"platform": forward.platform, "kind": forward.kind,
                                                    "attempts": forward.attempts, "error": error[:200]})

    async def relay_once(self) -> int:
        """Call the queued notices that are due (after a failure, a restart, or a burst past the calls in flight);
        forget finished ones once their bid can no longer be won again, and any left a day (a DSP no node is
        configured with any more). Returns how many were due."""
        now = self._clock.now()
        if now - self._purged_at >= PURGE_EVERY_S:
            self._purged_at = now
            for before, finished in ((now - self._ttl_s - 60, True), (now - ABANDONED_S, False)):
                for _ in range(PURGE_BATCHES):
                    if await self._store.purge_forwards(before, RELAY_BATCH, finished_only=finished) < RELAY_BATCH:
                        break
        due = await self._store.due_forwards(now, RELAY_BATCH, list(self._adapters))
        for result in await asyncio.gather(*(self._call(forward) for forward in due), return_exceptions=True):
            if isinstance(result, BaseException):  # a store error: the row's claim lapses and it is due again
                log.warning("DSP notice relay", extra={"error": f"{type(result).__name__}: {result}"[:200]})
        return len(due)

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


def _unusable(url: str) -> str | None:
    """Why a DSP's notice URL (macros substituted) cannot be called or stored, or None: an http(s) URL with a host
    that encodes, no control character, at most MAX_URL characters."""
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return "a control character"
    try:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.raw_host:
            return "not an http(s) URL with a host"
        parsed.raw_host.encode("idna")
    except (ValueError, UnicodeError) as exc:
        return f"not a URL: {exc}"[:200]
    return None

