"""Advertising campaigns and their creatives, hot in memory, durable in SQLite."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MediaFormat = Literal["banner", "video", "audio", "native"]


class Creative(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    id: str
    format: MediaFormat
    markup: str
    w: int | None = None
    h: int | None = None
    mimes: list[str] = []


class Targeting(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    countries: list[str] = []      # ISO-3166-1 alpha-3 as OpenRTB sends them; empty = anywhere
    device_types: list[int] = []   # OpenRTB devicetype codes; empty = any
    formats: list[MediaFormat] = []  # empty = any
    # Customers whose predicted lifetime value (retail currency) is in this band; None = open at that end.
    # A campaign with a band bids only on users with a known value whose personal data may be used.
    ltv_min: Annotated[float, msgspec.Meta(ge=0)] | None = None
    ltv_max: Annotated[float, msgspec.Meta(ge=0)] | None = None


class FrequencyCaps(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    minute: int | None = None
    hour: int | None = None
    day: int | None = None


class Campaign(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    id: str
    name: str
    advertiser_domain: str
    bid_cap_micros: int            # highest CPM we pay, USD micros
    daily_budget_micros: int       # USD micros per UTC day
    status: Literal["active", "paused"] = "active"
    categories: list[str] = []     # IAB content categories of the ads
    app_bundle: str | None = None  # the advertised app, checked against bapp
    deal_ids: list[str] = []       # PMP deals this campaign may bid on
    offer_ids: list[str] = []      # retail offers or products it promotes
    targeting: Targeting = Targeting()
    frequency_caps: FrequencyCaps = FrequencyCaps()
    creatives: list[Creative] = []
    created_at: float = 0.0
    # Value bidding: the share of the customer's predicted lifetime value this campaign bids as its CPM (see
    # app/bidding/processor.py ValuePricing); None = it bids the auction's price.
    value_share: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Campaign).decode
