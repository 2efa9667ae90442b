"""Win, billing, loss and click notices, matched to the bids we issued.

A bid is charged once per bid id, on whichever of the win or billing notice arrives
first; repeats are accepted and change nothing. Spend is the clearing CPM / 1000 per
impression. A click is recorded once per bid (a click tracker calls the click notice); a click on a bid recorded
as lost is a contradiction, refused (409) and recorded nowhere. Unknown or expired bid ids are refused (404) and
counted.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from app import ids
from app.bidding.campaigns import utc_day
from app.bidding.events import BidClicked, BidLost, BidWon
from app.bidding.shown import FeatureTap
from app.errors import Conflict, InvalidInput, NotFound
from app.eventlog import written_behind
from app.runtime.clock import Clock
from ml import features
from state.delivery import AlreadyCharged, IssuedBid
from state.ports import DeliveryStore, SharedBids


class SpendWatch(Protocol):
    """What follows spend by campaign (CampaignService): told when a charge starts and when it is over."""

    def charging(self, campaign_id: str) -> None: ...

    def charged(self, campaign_id: str) -> None: ...


# Loss reason codes are small (exchange-specific ones start at 1000): anything past an int32 is not one.
MAX_LOSS_REASON = 2**31 - 1


class BidLedger:
    """Bids we made, remembered until they expire: a ring of `max_bids` slots, written in turn.

    A bid's id is its sequence number (12 hex digits) followed by 96 random bits, so finding
    it is one list index and a comparison of the whole id, and no id can be guessed. Issuing
    writes the next slot, so there is no hash table to grow or rehash: the ordered dict this
    replaces stood the event loop still for 15, 35 and 91 ms as it passed 175,000, 350,000 and
    700,000 live bids, which a bidder at 8,000 bids a second with 300 s of them live does in its
    first minute and a half. When more than `max_bids` are live, the oldest are forgotten first.
    """

    _SEQ_DIGITS = 12

    def __init__(self, clock: Clock, max_bids: int = 1_000_000,
                 on_forgotten_live: Callable[[], object] | None = None) -> None:
        self._clock = clock
        self._on_forgotten_live = on_forgotten_live
        self._size = max_bids
        self._ring: list[IssuedBid | None] = []  # grows to max_bids, then is written round
        self._next = 0    # the sequence number of the next bid
        self._oldest = 0  # every bid before this one is forgotten
        self.forgotten_live = 0  # bids overwritten before they expired: more live than max_bids (raise it)

    def issue(self, request_id: str, imp_id: str, campaign_id: str, creative_id: str, user_id: str,
              price_micros: int, expires_at: float) -> str:
        """Remember a new bid; returns its id."""
        seq = self._next
        self._next = seq + 1
        bid_id = f"{seq:012x}{ids.token_hex(12)}"
        bid = IssuedBid(bid_id, request_id, imp_id, campaign_id, creative_id, user_id, price_micros, expires_at)
        if seq < self._size:
            self._ring.append(bid)
        else:
            slot = seq % self._size
            old = self._ring[slot]
            if old is not None and old.expires_at > self._clock.now():
                self.forgotten_live += 1  # its notices will find no bid: bidding.max_live_bids is too small
                if self._on_forgotten_live is not None:
                    self._on_forgotten_live()
            self._ring[slot] = bid
        return bid_id

    def _slot(self, bid_id: str) -> int | None:
        """The slot holding the bid, expired or not; None when it is not held (unknown, forgotten)."""
        try:
            seq = int(bid_id[:self._SEQ_DIGITS], 16)
        except ValueError:
            return None
        if not 0 <= seq < self._next:
            return None
        slot = seq % self._size
        bid = self._ring[slot]
        return slot if bid is not None and bid.bid_id == bid_id else None

    def find(self, bid_id: str) -> IssuedBid | None:
        slot = self._slot(bid_id)
        bid = self._ring[slot] if slot is not None else None
        if bid is None or bid.expires_at <= self._clock.now():
            return None
        return bid

    def __len__(self) -> int:
        """Bids still remembered (expired ones count until a sweep)."""
        return self._next - max(self._oldest, self._next - self._size)

    def sweep(self) -> int:
        """Forget expired bids (they are issued in time order, so expired ones are the oldest)."""
        now, removed = self._clock.now(), 0
        seq = max(self._oldest, self._next - self._size)
        while seq < self._next:
            slot = seq % self._size
            bid = self._ring[slot]
            if bid is not None and bid.expires_at > now:
                break
            self._ring[slot] = None
            seq += 1
            removed += 1
        self._oldest = seq
        return removed


def parse_price(raw: str | None) -> int:
    """A clearing CPM as sent in ${AUCTION_PRICE}, in micros."""
    if raw is None or raw == "" or raw.startswith("${"):
        raise InvalidInput("price is missing (the exchange did not substitute ${AUCTION_PRICE})")
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"price {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or value > 1_000_000:
        raise InvalidInput(f"price {raw!r} is out of range")
    return int(round(value * 1_000_000))


class NoticeService:
    def __init__(self, ledger: BidLedger, delivery: DeliveryStore, clock: Clock, log_event, metrics,
                 publish: Callable[[object], Awaitable[None]], feature_tap: FeatureTap | None = None,
                 shared: SharedBids | None = None, spend_watch: SpendWatch | None = None,
                 log_kept: Callable[[str, Any], Awaitable[None]] | None = None) -> None:
        """`log_kept`: logs an event and returns once it is written (EventLog.log_kept), for clicks: a click is
        recorded once, so one lost from the log behind to a kill -9 would be missing from the reports for good."""
        self._log_kept = log_kept or written_behind(log_event)
        self._publish = publish
        self._watch = spend_watch  # told of each charge, so budget views look again at that campaign alone
        self._shared = shared  # several nodes: a bid another node issued is found there
        self._tap = feature_tap
        self._ledger = ledger
        self._delivery = delivery
        self._clock = clock
        self._log_event = log_event
        self._notices = metrics.bid_notices

    async def _bid(self, kind: str, bid_id: str) -> IssuedBid:
        bid = self._ledger.find(bid_id)
        if bid is None and self._shared is not None:
            bid = await self._shared.find(bid_id)
        if bid is None:
            self._notices.labels(kind, "unknown_bid").inc()
            raise NotFound(f"unknown or expired bid id {bid_id!r}")
        return bid

    async def _charge(self, bid: IssuedBid, cpm_micros: int) -> bool:
        now = self._clock.now()
        watch = self._watch
        if watch is not None:
            watch.charging(bid.campaign_id)
        try:
            await self._delivery.charge(bid.bid_id, bid.campaign_id, bid.user_id, cpm_micros // 1000, utc_day(now),
                                        now)
        except AlreadyCharged:
            return False
        finally:
            if watch is not None:
                watch.charged(bid.campaign_id)
        return True

    async def win(self, bid_id: str, price: str | None) -> dict:
        bid = await self._bid("win", bid_id)
        cpm = parse_price(price)
        if cpm > bid.price_micros:
            self._notices.labels("win", "price_above_bid").inc()
            raise InvalidInput("clearing price is above our bid")
        now = self._clock.now()
        first = await self._delivery.record(bid_id, "win", bid.campaign_id, cpm, None, now)
        charged = await self._charge(bid, cpm)
        self._notices.labels("win", "ok" if first else "repeat").inc()
        if first:
            # `charged`: false when a billing notice charged the bid first; the reports then count its impression
            # and spend from that Billing event alone.
            self._log_event("Win", {"bid_id": bid_id, "campaign_id": bid.campaign_id, "price_micros": cpm,
                                    "charged": charged})
            row = self._tap.take(bid_id) if self._tap is not None else None
            if row is not None:  # what the bid model learns from: the shown ad's features, labelled by its clicks
                columns, values = features.to_sparse(row)
                self._log_event("Shown", {"bid_id": bid_id, "campaign_id": bid.campaign_id, "at": now,
                                          "i": columns, "v": values})
            await self._publish(BidWon(bid_id, bid.campaign_id, bid.creative_id, bid.user_id, cpm, now))
        return {"bid_id": bid_id, "recorded": first, "charged": charged}

    async def billing(self, bid_id: str, price: str | None) -> dict:
        bid = await self._bid("billing", bid_id)
        cpm = parse_price(price)
        if cpm > bid.price_micros:  # what a bid reserved of its budget is its own price: nothing clears above it
            self._notices.labels("billing", "price_above_bid").inc()
            raise InvalidInput("clearing price is above our bid")
        charged = await self._charge(bid, cpm)
        self._notices.labels("billing", "ok" if charged else "repeat").inc()
        if charged:
            self._log_event("Billing", {"bid_id": bid_id, "campaign_id": bid.campaign_id, "price_micros": cpm})
        return {"bid_id": bid_id, "recorded": charged, "charged": charged}

    async def loss(self, bid_id: str, reason: str | None, price: str | None) -> dict:
        bid = await self._bid("loss", bid_id)
        try:
            code = int(reason) if reason not in (None, "") and not reason.startswith("${") else None
        except ValueError:
            raise InvalidInput(f"loss reason {reason!r} is not an OpenRTB loss reason code") from None
        if code is not None and not 0 <= code <= MAX_LOSS_REASON:
            raise InvalidInput(f"loss reason {reason!r} is not an OpenRTB loss reason code")
        cpm = parse_price(price) if price and not price.startswith("${") else None
        now = self._clock.now()
        first = await self._delivery.record(bid_id, "loss", bid.campaign_id, cpm, code, now)
        self._notices.labels("loss", "ok" if first else "repeat").inc()
        if first:
            self._log_event("Loss", {"bid_id": bid_id, "campaign_id": bid.campaign_id, "reason": code})
            await self._publish(BidLost(bid_id, bid.campaign_id, bid.creative_id, bid.user_id, code, now))
        return {"bid_id": bid_id, "recorded": first, "charged": False}

    async def click(self, bid_id: str) -> dict:
        """A click on the ad of a bid: recorded, logged and published once; repeats change nothing. A click proves
        an impression, so one before the win notice is taken, but one on a bid recorded as lost (by whichever node
        took the loss notice) contradicts it: 409, and nothing recorded, logged or published."""
        bid = await self._bid("click", bid_id)
        now = self._clock.now()
        outcome = await self._delivery.record_click(bid_id, bid.campaign_id, now)
        if outcome == "lost":
            self._notices.labels("click", "lost_bid").inc()
            raise Conflict(f"bid {bid_id} was recorded as lost (a loss notice came for it): a click on its ad "
                           "cannot be", {"bid_id": bid_id, "outcome": "loss"})
        first = outcome == "recorded"
        self._notices.labels("click", "ok" if first else "repeat").inc()
        if first:
            await self._log_kept("Click", {"bid_id": bid_id, "campaign_id": bid.campaign_id, "user_id": bid.user_id})
            await self._publish(BidClicked(bid_id, bid.campaign_id, bid.creative_id, bid.user_id, now))
        return {"bid_id": bid_id, "recorded": first, "charged": False}
