"""Fare pricing properties (hypothesis): monotone, bounded, never negative, rounded as documented."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from app.retail.pricing import SEGMENTS, demand_multiplier, discounted, fare_cents, percent_of, time_multiplier

bases = st.integers(min_value=0, max_value=10_000_000)
utilisations = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
hours = st.floats(min_value=0.0, max_value=24 * 365, allow_nan=False)
segments = st.sampled_from(sorted(SEGMENTS))


@given(bases, utilisations, utilisations, hours, segments)
def test_fare_is_monotone_in_utilisation(base, u1, u2, h, segment):
    low, high = sorted((u1, u2))
    assert fare_cents(base, low, h, segment) <= fare_cents(base, high, h, segment)


@given(bases, utilisations, hours, segments)
def test_fare_is_bounded_and_never_negative(base, u, h, segment):
    fare = fare_cents(base, u, h, segment)
    assert 0 <= fare
    assert base * 0.5 * 0.9 * 0.95 - 1 <= fare <= base * 3.0 * 1.5 * 1.2 + 1


@given(st.floats(min_value=-5, max_value=5, allow_nan=False))
def test_demand_multiplier_is_clamped(u):
    assert Decimal("0.5") <= demand_multiplier(u) <= Decimal("3.0")


def test_the_documented_multipliers_and_rounding():
    assert demand_multiplier(0.0) == 1 and demand_multiplier(0.5) == Decimal("1.5") and demand_multiplier(1.0) == 3
    assert [time_multiplier(h) for h in (1, 23.9, 24, 71.9, 72, 720, 720.1)] == \
        [Decimal(x) for x in ("1.5", "1.5", "1.2", "1.2", "1.0", "1.0", "0.9")]
    # 10,001 x 1.5 (u=0.5) x 1.0 x 0.95 = 14,251.425 -> 14,251; 10,001 x 1.5 x 1.0 x 1.1 = 16,501.65 -> 16,502
    assert fare_cents(10_001, 0.5, 100, "leisure") == 14_251
    assert fare_cents(10_001, 0.5, 100, "corporate") == 16_502
    assert fare_cents(1, 0.0, 100, "economy") == 1 and fare_cents(0, 1.0, 1, "premium") == 0
    assert percent_of(1_250, 12) == 150 and percent_of(5, 10) == 1  # 0.5 rounds half up
    assert discounted(3_900, 20) == 3_120 and discounted(1_201, 50) == 600  # 600.5 off -> 601 off
