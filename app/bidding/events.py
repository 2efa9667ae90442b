"""What bidding tells the other domains, on the bus, once a notice is recorded (campaigns, bandits and
recommendations learn from outcomes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BidWon:
    """An exchange's win notice for one of our bids, the first time it arrives."""
    bid_id: str
    campaign_id: str
    creative_id: str
    user_id: str
    price_micros: int  # the clearing CPM, USD micros
    at: float


@dataclass(frozen=True, slots=True)
class BidLost:
    """An exchange's loss notice, the first time it arrives."""
    bid_id: str
    campaign_id: str
    creative_id: str
    user_id: str
    reason: int | None  # the OpenRTB loss reason code, when the exchange gave one
    at: float


@dataclass(frozen=True, slots=True)
class BidClicked:
    """A click on the ad of one of our bids (its click tracker called the click notice), the first time."""
    bid_id: str
    campaign_id: str
    creative_id: str
    user_id: str
    at: float
