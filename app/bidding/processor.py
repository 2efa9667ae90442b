"""BidProcessor: the one OpenRTB pipeline that REST, gRPC and websockets all call.

user id -> profile (L1/L2/default) -> privacy -> frequency caps -> candidates -> features
-> batched scoring -> loyalty boost -> per-imp winner above the floor -> value pricing -> BidResponse.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec
import numpy as np

from app import ids
from app.bidding.auction import NO_FLOOR, Settled, Terms
from app.bidding.campaigns import WINDOWS, CampaignService, Candidates
from app.bidding.notices import BidLedger
from app.bidding.openrtb import (
    MTYPE,
    NBR_DAILY_READER_CAP,
    NBR_INSUFFICIENT_TIME,
    NBR_TECHNICAL,
    NBR_UNKNOWN,
    Bid,
    BidRequest,
    BidResponse,
    Imp,
    SeatBid,
    banner_sizes,
)
from app.bidding.profiles import MISS, CachedProfile, ProfileCache
from app.bidding.shown import FeatureTap
from app.config import BiddingConfig
from app.runtime.clock import Clock
from ml import features
from ml.batcher import Batcher, Overloaded, ScoringTimeout
from state.campaigns import Campaign, Creative
from state.delivery import Admission
from state.ports import DeliveryStore, SharedBids, StorageUnavailable

# Notice URLs carry the bid id and the exchange's standard macros.
_NOTICE_QUERY = "&auction=${AUCTION_ID}&imp=${AUCTION_IMP_ID}&cur=${AUCTION_CURRENCY}&price=${AUCTION_PRICE}"
_LOSS_QUERY = _NOTICE_QUERY + "&reason=${AUCTION_LOSS}"
TIER_BOOST = {1.0: 1.30, 0.5: 1.15}  # loyalty tier feature (Reserve 1.0, Gold 0.5) -> bid boost
MICROS = 1_000_000


VALUE_PLATFORM = "openrtb"  # the platform bids ask lifetime values for (its heuristic's window and multiplier)


class Values(Protocol):
    """What value pricing reads (app/ltv/values.py ValueSource): synchronous, never waits."""

    def value(self, customer_id: str, platform: str) -> tuple[float | None, str]: ...


class ValuePricing:
    """Prices a value-bidding campaign's bid (its `value_share` set) from the customer's predicted lifetime value.

    The customer is worth value_share × LTV as a CPM: the LTV (retail currency units) is converted to micros of
    the bidding currency with `currency_rates` (USD per unit), scaled by the share and rounded down to a whole
    micro. The bid's price becomes that, never above the campaign's bid cap:
        price = min(bid_cap_micros, floor(value_share × LTV × rate(retail) / rate(bidding) × 1e6))
    It replaces the auction's price (bid factor and loyalty boost) both ways: a low-value customer is bid less.
    A value price below the floor (the imp's, or the deal's the bid is in), or of zero, drops the bid: what the
    customer is worth does not clear it. Values from the model, the remote model or the platform heuristic
    (fallback) price bids; with no value at all (source none) the bid keeps the auction's price.

    Raises above the auction's price draw on a burst budget: `value_burst_micros` per fixed window of
    `value_burst_window_s` (windows start at multiples of it on the platform clock), shared by every campaign of
    the instance, drawn when the bid is made (won or not). A raise the window's remainder cannot cover in full is
    refused, and the bid keeps the auction's price; lowering a bid draws nothing and gives nothing back.
    """

    def __init__(self, values: Values, config: BiddingConfig, retail_currency: str, metrics: Any = None) -> None:
        rates = config.currency_rates
        retail, bidding = rates.get(retail_currency.upper()), rates.get(config.currency.upper())
        # Micros of the bidding currency per unit of the retail currency; None: unconvertible, no value bidding.
        self.per_unit = retail / bidding * MICROS if retail and bidding else None
        self._values = values
        self._burst = config.value_burst_micros
        self._window_s = config.value_burst_window_s
        self._window = -1
        self.left = 0                   # micros of raises the current window has left
        self.priced = {"model": 0, "remote": 0, "fallback": 0}
        self.dropped = {"model": 0, "remote": 0, "fallback": 0}
        self.refused = 0
        family = getattr(metrics, "bid_value_priced", None)
        self._priced_metric = {k: family.labels(k) for k in self.priced} if family is not None else {}
        family = getattr(metrics, "bid_value_dropped", None)
        self._dropped_metric = {k: family.labels(k) for k in self.dropped} if family is not None else {}
        self._refused_metric = getattr(metrics, "bid_value_burst_refused", None)

    def known_value(self, user_id: str) -> float | None:
        """The customer's own predicted lifetime value (retail currency), for LTV-band targeting: None when the
        model has not valued them yet (the platform heuristic prices bids, but says nothing about a customer)."""
        value, source = self._values.value(user_id, VALUE_PLATFORM)
        return value if source in ("model", "remote") else None

    def price(self, campaign: Campaign, user_id: str, auction_price: int, floor: float, now: float) -> int | None:
        """The price of `campaign`'s bid to `user_id` (whose personal data may be used): the auction's price when
        value does not apply or a raise is refused, the value price, or None to drop the bid."""
        share, per_unit = campaign.value_share, self.per_unit
        if share is None or per_unit is None:
            return auction_price
        value, source = self._values.value(user_id, VALUE_PLATFORM)
        if value is None:
            return auction_price
        price = min(campaign.bid_cap_micros, int(share * value * per_unit))
        if price < floor or price <= 0:
            self.dropped[source] = self.dropped.get(source, 0) + 1
            _inc(self._dropped_metric, source)
            return None
        raise_ = price - auction_price
        if raise_ > 0:
            window = int(now // self._window_s)
            if window != self._window:
                self._window, self.left = window, self._burst
            if raise_ > self.left:
                self.refused += 1
                if self._refused_metric is not None:
                    self._refused_metric.inc()
                return auction_price
            self.left -= raise_
        self.priced[source] = self.priced.get(source, 0) + 1
        _inc(self._priced_metric, source)
        return price


def _inc(children: dict[str, Any], label: str) -> None:
    child = children.get(label)
    if child is not None:
        child.inc()


class BidEvent(msgspec.Struct, gc=False):
    """The event log's record of a bid made."""
    request_id: str | None
    bid_id: str
    imp_id: str
    price: float
    campaign_id: str | None
    deal_id: str | None


@dataclass
class Outcome:
    response: BidResponse | None
    reason: str                 # "bid" or the no-bid reason
    nbr: int | None = None
    bids: int = 0


_NO_CAPS = (-1, -1, -1)


def _caps(minute: int | None, hour: int | None, day: int | None) -> tuple[int, int, int]:
    """Impression caps a minute, hour and day as the shared admission takes them (-1: none)."""
    return (-1 if minute is None else minute, -1 if hour is None else hour, -1 if day is None else day)


@functools.cache
def _positions(n: int) -> np.ndarray:
    """Offer position feature: 0 for the first candidate .. 1 for the last."""
    return np.arange(n, dtype=np.float32) / max(1, n - 1)


@functools.cache
def _unused_columns(n: int) -> np.ndarray:
    """The candidate columns of a user who has used no frequency cap (read-only, shared)."""
    columns = features.candidate_columns(None, _positions(n))
    columns.flags.writeable = False
    return columns


def unservable(request: BidRequest) -> str | None:
    """Why no imp of this valid request can take a bid, or None when one can: a banner with no size
    (and no other medium offered) fits no creative, and a private auction without deals admits no
    bid. Asked only once the answer is a no-bid, to name its reason, so bids never pay for it."""
    reason = None
    for imp in request.imp or ():
        pmp = imp.pmp
        if pmp is not None and pmp.private_auction == 1 and not pmp.deals:
            reason = reason or "private_auction_without_deals"
        elif imp.video is None and imp.audio is None and imp.native is None and \
                (imp.banner is None or not banner_sizes(imp.banner)):
            reason = reason or "banner_without_size"
        else:
            return None
    return reason


def personal_data_allowed(request: BidRequest) -> bool:
    """COPPA, or GDPR without a consent string, means no personal features."""
    regs, user = request.regs, request.user
    coppa = regs is not None and regs.coppa == 1
    gdpr = regs is not None and (regs.gdpr == 1 or (regs.ext or {}).get("gdpr") == 1)
    consent = user is not None and bool(user.consent or (user.ext or {}).get("consent"))
    return not coppa and (not gdpr or consent)


class BidProcessor:
    def __init__(self, config: BiddingConfig, campaigns: CampaignService, profiles: ProfileCache,
                 delivery: DeliveryStore, batcher: Batcher, ledger: BidLedger, clock: Clock, log_event,
                 notice_base_url: str, loyalty_features: Callable[[str], np.ndarray | None] | None = None,
                 feature_tap: FeatureTap | None = None,
                 value_pricing: ValuePricing | None = None, shared: SharedBids | None = None) -> None:
        self.config = config
        # Every bid is admitted against its campaign's budget, its most reserved until it is charged or expires:
        # one node's reckoning in memory (adapters/sqlite/delivery.py), several nodes' in Redis, with caps.
        self._shared = shared
        self._user_caps = _caps(config.user_cap_minute or None, config.user_cap_hour or None,
                                config.user_cap_day or None)  # 0 there means no cap
        self._campaigns = campaigns
        self._profiles = profiles
        self._delivery = delivery
        self.batcher = batcher
        self._ledger = ledger
        self._tap = feature_tap  # the rows bids were scored on, for the win notices to log for training
        self._clock = clock
        self._log_event = log_event
        self.set_notice_base(notice_base_url)
        self._rates = config.currency_rates
        self._anonymous_rows: dict[int, np.ndarray] = {}
        # user id -> the 8 loyalty features (from the loyalty capability), or None for non-members.
        self.loyalty_features = loyalty_features
        # Prices value-bidding campaigns' bids from the customer's lifetime value; None: no campaign bids on value.
        self.value_pricing = value_pricing

    def _user_capped(self, user_id: str | None, now: float) -> bool:
        if user_id is None or not self._delivery.has_impressions(user_id):
            return False
        for window, seconds in WINDOWS.items():
            cap = getattr(self.config, f"user_cap_{window}")
            if cap and self._delivery.count_since(user_id, now - seconds) >= cap:
                return True
        return False

    def _floor_micros(self, amount: float, currency: str) -> int | None:
        rate = self._rates.get(currency.upper())
        return None if rate is None else int(round(amount * rate * MICROS))

    def _no_bid(self, request: BidRequest, reason: str, nbr: int) -> Outcome:
        self._log_event("NoBid", {"request_id": request.id, "reason": reason, "nbr": nbr})
        return Outcome(None, reason, nbr)

    def set_notice_base(self, base_url: str) -> None:
        """Where exchanges send win, billing and loss notices (the three URL prefixes every bid carries)."""
        base = base_url.rstrip("/")
        self._nurl, self._burl, self._lurl = (f"{base}/v1/notices/{kind}?bid=" for kind in ("win", "billing", "loss"))

    def failed(self, request: BidRequest) -> Outcome:
        """The answer to a request whose processing raised: a technical no-bid."""
        return self._no_bid(request, "error", NBR_TECHNICAL)

    async def process(self, request: BidRequest, started: float | None = None, seat: str | None = None) -> Outcome:
        """Answer one validated BidRequest; `started` is the perf_counter when it arrived."""
        started = time.perf_counter() if started is None else started
        cfg = self.config
        deadline = started + (request.tmax / 1000 if request.tmax else cfg.default_tmax_ms / 1000)
        if deadline - time.perf_counter() < cfg.min_scoring_ms / 1000:
            return self._no_bid(request, "insufficient_time", NBR_INSUFFICIENT_TIME)
        now = self._clock.now()
        user = request.user
        user_id = (user.id or user.buyeruid) if user else None
        if self._user_capped(user_id, now):
            return self._no_bid(request, "frequency_capped", NBR_DAILY_READER_CAP)
        personal = personal_data_allowed(request)
        profile: CachedProfile | None = None
        if user_id and personal:
            hit = self._profiles.cached(user_id)
            profile = await self._profiles.get(user_id) if hit is MISS else hit
        loyalty = self.loyalty_features(user_id) if (user_id and personal and self.loyalty_features) else None
        if loyalty is None and profile is not None:
            loyalty = profile.loyalty
        pricing = self.value_pricing
        customer_value = (lambda: pricing.known_value(user_id)) if user_id and personal and pricing is not None \
            else None
        found = self._campaigns.candidates(request, user_id, now, cfg.batch_size, customer_value)
        if found is None:
            return self._no_bid(request, unservable(request) or "no_eligible_campaign", NBR_UNKNOWN)

        imps: Sequence[Imp] = request.imp or ()
        pmp = imps[0].pmp if len(imps) == 1 else None
        simple = len(imps) == 1 and (pmp is None or not (pmp.deals or pmp.private_auction))
        floor = self._floor_micros(imps[0].bidfloor, imps[0].bidfloorcur) if simple else NO_FLOOR
        if floor is None:  # a floor in a currency we do not price in: nothing can clear it
            return self._no_bid(request, "below_floor", NBR_UNKNOWN)
        boost = TIER_BOOST.get(round(float(loyalty[0]), 1), 1.0) if loyalty is not None and len(loyalty) else 1.0
        user_row, cand = self._features(request, profile, loyalty, found)
        remaining = deadline - time.perf_counter()
        if remaining < cfg.min_scoring_ms / 1000:
            return self._no_bid(request, "insufficient_time", NBR_INSUFFICIENT_TIME)
        try:
            settled: Settled = await self.batcher.score(user_row, cand, min(self.batcher.timeout, remaining),
                                                        Terms(found.caps, boost, floor))
        except Overloaded:
            return self._no_bid(request, "overloaded", NBR_TECHNICAL)
        except ScoringTimeout:
            return self._no_bid(request, "scoring_timeout", NBR_INSUFFICIENT_TIME)

        value_user = user_id if personal and self.value_pricing is not None else None
        if simple:
            winner = settled.winner
            if winner < 0:
                bids = []
            else:
                pair, price = found.pair(winner), settled.price
                if value_user and pair[0].value_share is not None:
                    assert self.value_pricing is not None
                    value_price = self.value_pricing.price(pair[0], value_user, price, floor, now)
                    if value_price is None:
                        return self._no_bid(request, "value_below_floor", NBR_UNKNOWN)
                    price = value_price
                bids = [self._make_bid(request, imps[0], pair, price, None, user_id, now, user_row, cand[winner])]
        else:
            bids = self._choose(request, found, settled, user_id, now, seat, user_row, cand, value_user)
        if not bids:
            return self._no_bid(request, unservable(request) or "below_floor", NBR_UNKNOWN)
        if self._shared is not None:
            bids, refused = await self._admitted(bids, user_id, now)
            if not bids:
                return self._no_bid(request, refused, NBR_DAILY_READER_CAP if refused == "frequency_capped" else
                                    NBR_TECHNICAL if refused == "shared_state_unavailable" else NBR_UNKNOWN)
        response = BidResponse(id=request.id or "", seatbid=[SeatBid(bid=bids, seat=seat or cfg.seat)],
                               bidid=ids.token_hex(16), cur=cfg.currency)
        for b in bids:
            self._log_event("Bid", BidEvent(request.id, b.id, b.impid, b.price, b.adid, b.dealid))
        return Outcome(response, "bid", None, len(bids))

    async def _admitted(self, bids: list[Bid], user_id: str | None, now: float) -> tuple[list[Bid], str]:
        """The bids the shared budgets and caps admit, and why the others were refused."""
        assert self._shared is not None
        admissions = []
        for b in bids:
            issued = self._ledger.find(b.id)
            assert issued is not None  # issued a moment ago
            campaign = self._campaigns.get(issued.campaign_id)
            caps = _caps(campaign.frequency_caps.minute, campaign.frequency_caps.hour, campaign.frequency_caps.day)
            admissions.append(Admission(issued, self._campaigns.paced_limit(campaign, now), caps if user_id else
                                        _NO_CAPS))
        try:
            verdicts = await self._shared.admit(admissions, user_id or "", self._user_caps if user_id else _NO_CAPS,
                                                now)
        except StorageUnavailable:
            return [], "shared_state_unavailable"
        kept = [b for b, verdict in zip(bids, verdicts, strict=True) if not verdict]
        return kept, "frequency_capped" if "frequency_capped" in verdicts else "budget_exhausted"

    def _features(self, request: BidRequest, profile: CachedProfile | None, loyalty: np.ndarray | None,
                  found: Candidates) -> tuple[np.ndarray, np.ndarray]:
        """The request's user block and each candidate's own feature columns."""
        device_type = request.device.devicetype if request.device else None
        user_row: np.ndarray | None
        if profile is not None or loyalty is not None:
            now = self._clock.now()
            last_seen = profile.last_seen if profile is not None else 0.0
            recency = 1.0 / (1.0 + max(0.0, now - last_seen) / 86_400) if last_seen else 0.0
            user_row = features.user_block(profile.interests if profile else None,
                                           list(profile.segments) if profile else None, loyalty, recency,
                                           device_type)
        else:
            kind = min(max(device_type or 0, 0), 7)  # the feature's own clamp keeps this cache at 8 rows
            user_row = self._anonymous_rows.get(kind)
            if user_row is None:
                user_row = self._anonymous_rows[kind] = features.user_block(None, None, None, 0.0, kind)
        if found.freq is None:
            return user_row, _unused_columns(found.n)
        return user_row, features.candidate_columns(found.freq, _positions(found.n))

    def _choose(self, request: BidRequest, found: Candidates, settled: Settled, user_id: str | None, now: float,
                seat: str | None, user_row: np.ndarray, cand: np.ndarray, value_user: str | None = None) -> list[Bid]:
        """Each impression's winner, for requests with several impressions or deals. A winner that bids on value
        is priced by it (`value_user`: the user whose value may be read); its value below the floor of the deal
        it bids in (or the imp's) drops the impression's bid."""
        rank, prices = settled.rank, settled.prices
        assert rank is not None and prices is not None  # settle() gives both to every request it does not choose for
        imps = request.imp or ()
        bids = []
        for imp_index, imp in enumerate(imps):
            members = np.flatnonzero(found.imp_of == imp_index) if len(imps) > 1 else None
            deals: dict[int, str] = {}
            if imp.pmp is not None and imp.pmp.deals:
                # Deal floors replace the open floor; a private auction admits deal bids only.
                eligible = []
                for i in (range(found.n) if members is None else members):
                    deal = self._deal_for(imp, found.pair(int(i))[0], int(prices[i]), seat)
                    if deal is False:
                        continue
                    if deal is None:
                        floor = self._floor_micros(imp.bidfloor, imp.bidfloorcur)
                        if floor is None or prices[i] < floor:
                            continue
                    else:
                        deals[int(i)] = deal
                    eligible.append(i)
                members = np.asarray(eligible, dtype=np.int64)
            elif imp.pmp is not None and imp.pmp.private_auction == 1:
                continue  # a private auction without deals: no bid is admitted
            else:
                floor = self._floor_micros(imp.bidfloor, imp.bidfloorcur)
                if floor is None:
                    continue
                members = np.flatnonzero(prices >= floor) if members is None else members[prices[members] >= floor]
            if not len(members):
                continue
            i = int(members[np.argmax(rank[members])])
            pair, price, deal = found.pair(i), int(prices[i]), deals.get(i)
            if value_user and pair[0].value_share is not None:
                assert self.value_pricing is not None
                floor = self._deal_floor(imp, deal) if deal is not None else \
                    self._floor_micros(imp.bidfloor, imp.bidfloorcur)
                value_price = self.value_pricing.price(pair[0], value_user, price, math.inf if floor is None else
                                                       floor, now)
                if value_price is None:
                    continue
                price = value_price
            bids.append(self._make_bid(request, imp, pair, price, deal, user_id, now, user_row, cand[i]))
        return bids

    def _make_bid(self, request: BidRequest, imp: Imp, pair: tuple[Campaign, Creative], price: int,
                  deal: str | None, user_id: str | None, now: float, user_row: np.ndarray, cand_row: np.ndarray) -> Bid:
        campaign, creative = pair
        bid_id = self._ledger.issue(request.id or "", imp.id or "", campaign.id, creative.id, user_id or "", price,
                                    now + self.config.bid_ttl_s)
        if self._tap is not None:
            self._tap.keep(bid_id, user_row, cand_row)
        return Bid(
            id=bid_id, impid=imp.id or "", price=round(price / MICROS, 6), adid=campaign.id, crid=creative.id,
            adomain=[campaign.advertiser_domain], adm=creative.markup, cat=campaign.categories or None,
            nurl=self._nurl + bid_id + _NOTICE_QUERY, burl=self._burl + bid_id + _NOTICE_QUERY,
            lurl=self._lurl + bid_id + _LOSS_QUERY,
            w=creative.w, h=creative.h, mtype=MTYPE[creative.format], dealid=deal)

    def _deal_floor(self, imp: Imp, deal_id: str) -> int | None:
        """The floor in micros of the imp's deal `deal_id` (the first of that id, as _deal_for reads them)."""
        for deal in imp.pmp.deals if imp.pmp is not None and imp.pmp.deals else ():
            if deal.id == deal_id:
                return self._floor_micros(deal.bidfloor, deal.bidfloorcur)
        return None

    def _deal_for(self, imp: Imp, campaign: Campaign, price: int, seat: str | None) -> str | None | Literal[False]:
        """The deal id to bid in, None for the open auction, or False if this pair may not bid."""
        pmp = imp.pmp
        if pmp is None or not pmp.deals:
            return None
        our_seat = seat or self.config.seat
        for deal in pmp.deals:
            if deal.id in campaign.deal_ids and (not deal.wseat or our_seat in deal.wseat):
                floor = self._floor_micros(deal.bidfloor, deal.bidfloorcur)
                if floor is not None and price >= floor:
                    return deal.id
        return False if pmp.private_auction == 1 else None
