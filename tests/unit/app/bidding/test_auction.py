"""The batch auction: settling a whole batch at once picks what each request would pick alone (hypothesis),
checked against numpy's evaluation of the documented price rule."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.bidding.auction import NO_FLOOR, Terms, settle


def prices_for(caps: np.ndarray, bid_factor: np.ndarray, boost: float) -> np.ndarray:
    """The documented price rule, as numpy evaluates it: the reference for the compiled auction."""
    return np.minimum(caps, np.floor(caps * (0.25 + 0.75 * bid_factor.astype(np.float64)) * boost))


@st.composite
def _batches(draw):
    calls = []
    same = draw(st.one_of(st.none(), st.integers(1, 8)))  # one size for every request, as is usual, or mixed
    for _ in range(draw(st.integers(1, 6))):
        n = same or draw(st.integers(1, 8))
        caps = draw(st.lists(st.integers(1, 5_000_000), min_size=n, max_size=n))
        # Few distinct scores, so ties between candidates are common.
        score = draw(st.lists(st.sampled_from([-0.5, 0.0, 0.25, 0.5, 0.9]), min_size=n, max_size=n))
        factor = draw(st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n))
        boost = draw(st.sampled_from([1.0, 1.15, 1.30]))
        floor = draw(st.one_of(st.just(NO_FLOOR), st.integers(0, 5_000_000)))
        calls.append((np.array(caps, np.float64), np.array(score, np.float32), np.array(factor, np.float32),
                      boost, floor))
    if same and draw(st.booleans()):  # requests of one shape: one caps array, shared
        calls = [(calls[0][0], *call[1:]) for call in calls]
    return calls


@settings(max_examples=300, deadline=None)
@given(_batches(), st.booleans())
def test_the_batch_auction_picks_what_each_request_would_pick_alone(calls, strided):
    """Settling a whole batch at once gives each request the winner and price it would get on its own:
    the first highest-ranked candidate whose price reaches the floor, never above its cap."""
    sizes = [len(c[0]) for c in calls]
    score = np.concatenate([c[1] for c in calls])
    factor = np.concatenate([c[2] for c in calls])
    if strided:  # the outputs as columns of one (rows, 2) array, as some providers give them
        both = np.stack([score, factor], axis=1)
        score, factor = both[:, 0], both[:, 1]
    settled = settle([Terms(caps, boost, floor) for caps, _, _, boost, floor in calls], score, score, factor, sizes)
    for (caps, s, f, boost, floor), got in zip(calls, settled, strict=True):
        prices = prices_for(caps, f, boost)
        assert (prices <= caps).all()
        if floor == NO_FLOOR:  # several impressions or deals: the processor chooses from these
            assert np.array_equal(got.prices, prices) and np.array_equal(got.rank, s * boost)
        eligible = [i for i in range(len(caps)) if prices[i] >= floor]
        if floor == NO_FLOOR or not eligible:
            assert got.winner == -1
        else:
            best = max(s[i] * np.float32(boost) for i in eligible)
            assert got.winner == next(i for i in eligible if s[i] * np.float32(boost) == best)
            assert got.price == int(prices[got.winner])
