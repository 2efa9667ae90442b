"""What bids turned into: wins, losses, charges, impressions and daily spend."""

from __future__ import annotations

from typing import Literal

import msgspec

# A click notice's outcome (DeliveryStore.record_click): the first for its bid, a repeat, or refused because a loss
# notice was recorded for the bid.
ClickOutcome = Literal["recorded", "repeat", "lost"]


class AlreadyCharged(Exception):
    """This bid id has been charged before."""


class IssuedBid(msgspec.Struct, frozen=True, gc=False):
    """A bid we made, kept until it expires (many thousands at a time: not tracked by the GC)."""

    bid_id: str
    request_id: str
    imp_id: str
    campaign_id: str
    creative_id: str
    user_id: str
    price_micros: int   # the bid's CPM: no notice may clear above it
    expires_at: float


class Admission(msgspec.Struct, frozen=True):
    """A bid to be admitted by the nodes' shared budgets and caps (several nodes: adapters/redis)."""

    bid: IssuedBid
    limit_micros: int              # what pacing lets its campaign have spent (and reserved) by now, today
    caps: tuple[int, int, int]     # the campaign's impressions per user a minute, hour and day; -1 = no cap
