"""Fare pricing in integer cents.

fare = base × demand(u) × time_to_departure(h) × segment

- demand:  1 + 2u² for cabin utilisation u (held / capacity), clamped to [0.5, 3.0]
- time to departure: < 24 h ×1.5, < 72 h ×1.2, > 720 h ×0.9, else ×1.0
- segment: premium ×1.2, corporate ×1.1, economy ×1.0, leisure ×0.95

Rounding: the multipliers are multiplied exactly as decimals and the product is rounded
once, to the nearest cent, halves up. Taxes are a configured percentage of the items'
total, applied in basis points (so to 0.01%), rounded the same way; discounts are whole
percentages of a price, rounded the same way. The booking fee is a flat amount per order.
"""

from __future__ import annotations

import calendar
import functools
import time
from decimal import ROUND_HALF_UP, Decimal

SEGMENTS = {"premium": Decimal("1.2"), "corporate": Decimal("1.1"), "economy": Decimal("1.0"),
            "leisure": Decimal("0.95")}
DEMAND_MIN, DEMAND_MAX = Decimal("0.5"), Decimal("3.0")
_LAST_DAY, _LAST_DAYS, _EARLY, _ONE = Decimal("1.5"), Decimal("1.2"), Decimal("0.9"), Decimal("1.0")


def demand_multiplier(utilisation: float) -> Decimal:
    u = Decimal(repr(min(1.0, max(0.0, utilisation))))
    return min(DEMAND_MAX, max(DEMAND_MIN, 1 + 2 * u * u))


def time_multiplier(hours_to_departure: float) -> Decimal:
    if hours_to_departure < 24:
        return _LAST_DAY
    if hours_to_departure < 72:
        return _LAST_DAYS
    if hours_to_departure > 720:
        return _EARLY
    return _ONE


def cents(amount: Decimal) -> int:
    """Round to a whole cent, halves up."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fare_cents(base_cents: int, utilisation: float, hours_to_departure: float, segment: str) -> int:
    """One passenger's fare in cents."""
    return cents(base_cents * demand_multiplier(utilisation) * time_multiplier(hours_to_departure)
                 * SEGMENTS[segment])


def percent_of(amount_cents: int, percent: float) -> int:
    """`percent` (to 0.01%) of a non-negative amount, in cents, halves up; exact integer arithmetic."""
    basis_points = round(percent * 100)
    return (amount_cents * basis_points + 5_000) // 10_000


def discounted(price_cents: int, discount_percent: int) -> int:
    return price_cents - percent_of(price_cents, discount_percent)


@functools.lru_cache(maxsize=1024)
def day_start(date: str) -> float | None:
    """00:00 UTC of a YYYY-MM-DD date as epoch seconds, or None when it is not one (strptime alone would take
    2026-1-5; every caller, REST search and changes and gRPC ranking, shares this one rule)."""
    if len(date) != 10 or date[4] != "-" or date[7] != "-":
        return None
    try:
        return float(calendar.timegm(time.strptime(date, "%Y-%m-%d")))
    except ValueError:
        return None
