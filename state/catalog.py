"""The carrier's catalog: flights with their cabins, and the ancillary products sold with them."""

from __future__ import annotations

import time
from typing import Literal

import msgspec

CabinName = Literal["economy", "premium", "business"]
ProductKind = Literal["Flight", "Seat", "Bag", "Meal", "Lounge", "CarbonOffset", "Insurance", "FastTrack"]
ANCILLARY_KINDS = ("Seat", "Bag", "Meal", "Lounge", "CarbonOffset", "Insurance", "FastTrack")


class Cabin(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    capacity: int            # seats for sale in this cabin
    base_fare_cents: int     # one passenger, before demand, time and segment multipliers


class Flight(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    id: str                  # e.g. CT101-2026-12-01
    airline: str             # IATA code of the operating carrier
    number: str              # e.g. CT101
    origin: str              # IATA airport codes
    destination: str
    departure_at: float      # epoch seconds, UTC
    arrival_at: float
    cabins: dict[str, Cabin]
    currency: str = "USD"
    status: Literal["scheduled", "cancelled"] = "scheduled"

    @property
    def departure_date(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.departure_at))


class Product(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    id: str
    kind: ProductKind
    name: str
    price_cents: int
    currency: str = "USD"
    capacity_per_flight: int | None = None  # lounge places, meals on board; None = not limited
    status: Literal["active", "retired"] = "active"


_flight_json = msgspec.json.Decoder(Flight)
_product_json = msgspec.json.Decoder(Product)
_encode = msgspec.json.Encoder().encode
