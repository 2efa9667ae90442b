"""The compiled fast path (ml/ltv/kernels.py) against the plain numpy path (`LTVModel.fast = False`).

The kernels do the plain path's arithmetic in the same order, but libm's log/exp/log1p may differ from numpy's in the
last bit, a few sums run in order where numpy's run pairwise or through BLAS, and the correction's linear predictor
adds its terms in another order. Those are errors of about 1e-16 relative in each term; the gamma quantiles of the
interval and the confidence (gammaincinv, gammainc) amplify them at most a few thousand times (about 1e-12 seen),
so 1e-9 relative is a bound with room to spare, and any real mistake in a formula is far above it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from ml.ltv import LTVModel, Prediction, Summary, fit_transactions, kernels
from tests.unit.ml.ltv.test_simulated import PN, simulate

RTOL = 1e-9
NAMES = ("channel_a", "channel_b")


@pytest.fixture(scope="module")
def fitted() -> LTVModel:
    cust, day, value, cal, _ = simulate("pnbd", PN, 1500, seed=5)
    ids = np.unique(cust)
    extra = np.random.default_rng(5).normal(size=(len(ids), 2))
    return fit_transactions(cust, np.floor(day), value, cal, (ids, extra), NAMES)[2]


def customers(n: int, seed: int) -> Summary:
    """Random customers with the awkward ones mixed in: no repeat purchase, a purchase today, a negative mean
    spend, a brand-new customer, a heavy buyer, a frequent flyer, and repeats of the first row (rows the kernels
    may share)."""
    rng = np.random.default_rng(seed)
    frequency = rng.choice([0, 0, 1, 2, 3, 5, 8, 13, 40], n).astype(np.float64)
    age = rng.uniform(0.5, 600, n)
    recency = np.where(frequency > 0, rng.uniform(0, 1, n) * age, 0.0)
    monetary = np.where(frequency > 0, rng.lognormal(3, 1, n), 0.0)
    extra = rng.normal(size=(n, 2))
    for i, (f, r, a, m) in enumerate([(4.0, 90.0, 90.0, 20.0), (2.0, 10.0, 50.0, -5.0), (0.0, 0.0, 0.0, 0.0),
                                      (300.0, 700.0, 720.0, 35.0), (2000.0, 2100.0, 2101.0, 120.0)]):
        if i + 1 < n:
            frequency[i + 1], recency[i + 1], age[i + 1], monetary[i + 1] = f, r, a, m
    if n > 8:
        for j in (6, 7):
            frequency[j], recency[j], age[j], monetary[j], extra[j] = \
                frequency[0], recency[0], age[0], monetary[0] * j, extra[0]
    return Summary(frequency, recency, age, monetary, extra, NAMES)


@contextmanager
def served(model: LTVModel, method: str, use_extra: bool, seed: int) -> Iterator[None]:
    """The model serving `method`; with `use_extra`, a correction (of random weights) that reads the extra features."""
    kept = (model.method, model.use_extra, model.weights, model.mean, model.scale)
    rng = np.random.default_rng(seed)
    model.method, model.use_extra = method, use_extra
    if use_extra:
        model.weights = [float(v) for v in rng.normal(0, 0.3, 9)]
        model.mean = [float(v) for v in rng.normal(0, 1, 8)]
        model.scale = [float(v) for v in rng.uniform(0.5, 2, 8)]
    elif len(model.weights) != 7:
        model.weights, model.mean, model.scale = model.weights[:7], model.mean[:6], model.scale[:6]
    for cached in ("_linear", "_fast_linear"):
        model.__dict__.pop(cached, None)
    try:
        yield
    finally:
        model.method, model.use_extra, model.weights, model.mean, model.scale = kept
        for cached in ("_linear", "_fast_linear"):
            model.__dict__.pop(cached, None)


@contextmanager
def plain() -> Iterator[None]:
    LTVModel.fast = False
    try:
        yield
    finally:
        LTVModel.fast = True


def assert_close(fast: np.ndarray, ref: np.ndarray, what: str) -> None:
    ref = np.asarray(ref)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(fast, ref, rtol=RTOL, atol=1e-12 * scale, err_msg=what)


def assert_same_explanations(fast: list[list[tuple[str, float, float]]],
                             ref: list[list[tuple[str, float, float]]]) -> None:
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref, strict=True):
        got, want = {n: (c, v) for n, c, v in a}, {n: (c, v) for n, c, v in b}
        assert got.keys() == want.keys()
        scale = max(abs(c) for c, _ in want.values())
        for name, (c, v) in want.items():
            assert got[name][1] == v
            assert got[name][0] == pytest.approx(c, rel=RTOL, abs=1e-12 * scale), name
        # Largest |contribution| first; only contributions equal to rounding may change places.
        for (n1, c1, _), (n2, c2, _) in zip(a, b, strict=True):
            assert n1 == n2 or abs(abs(c1) - abs(c2)) <= 1e-9 * scale


METHOD_CASES = [(m, False) for m in ("pareto/nbd", "bg/nbd", "mixture", "corrected")] + [("corrected", True)]


@pytest.mark.parametrize(("method", "use_extra"), METHOD_CASES)
@pytest.mark.parametrize(("horizon", "rate"), [(365, 0.1), (30, 0.0), (0, 0.1), (1000, 0.4)])
def test_fast_predict_matches_the_plain_path(fitted, method, use_extra, horizon, rate):
    for seed, n in ((1, 1), (2, 8), (3, 16), (4, 32), (5, 300)):
        s = customers(n, seed)
        with served(fitted, method, use_extra, seed):
            fast = fitted.predict(s, horizon, rate)
            with plain():
                ref = fitted.predict(s, horizon, rate)
        for field in Prediction.__dataclass_fields__:
            assert_close(getattr(fast, field), getattr(ref, field), f"{method} {field} n={n}")


@pytest.mark.parametrize(("method", "use_extra"), METHOD_CASES)
@pytest.mark.parametrize(("horizon", "rate"), [(365, 0.1), (30, 0.0), (1000, 0.4)])
def test_fast_explanations_match_the_plain_path(fitted, method, use_extra, horizon, rate):
    for seed, n in ((1, 1), (2, 8), (3, 16), (4, 32)):
        s = customers(n, seed)
        rows = list(range(n))[::-1] if seed % 2 else list(range(n))
        with served(fitted, method, use_extra, seed):
            for top in (3, 10):
                fast = fitted.explain_many(s, rows, horizon, rate, top)
                with plain():
                    ref = fitted.explain_many(s, rows, horizon, rate, top)
                assert [len(e) for e in fast] == [len(e) for e in ref]
                if top == 10:
                    assert_same_explanations(fast, ref)
                else:
                    for a, b in zip(fast, ref, strict=True):
                        assert [c for _, c, _ in a] == pytest.approx([c for _, c, _ in b], rel=RTOL, abs=1e-12)


def test_many_customers_take_the_grouped_count_sums_alike(fitted):
    """The predictive count sums run per length group; a heavy buyer among many."""
    s = customers(2000, 9)
    with served(fitted, "corrected", True, 9):
        fast = fitted.predict(s, 720, 0.1)
        with plain():
            ref = fitted.predict(s, 720, 0.1)
    for field in Prediction.__dataclass_fields__:
        assert_close(getattr(fast, field), getattr(ref, field), field)


def test_nothing_to_explain_and_the_kernels_share_only_equal_rows(fitted):
    s = customers(16, 4)
    assert fitted.explain_many(s, [], 365, 0.1) == []
    # Rows 6 and 7 repeat row 0's frequency, recency and age: they read its hypergeometric functions, and no
    # other row does (unless equal in those three too).
    xtT = kernels.inputs(s.frequency, s.recency, s.age, s.monetary)[0]
    with served(fitted, "mixture", False, 4):
        code, par, _, _ = fitted._fast_numbers(365, 0.1)
        args, idx = kernels.base_args(code, par, xtT, 1)
    assert args.shape == (4, 3 * (len(s) - 2))
    assert list(idx[:, 6]) == list(idx[:, 0]) and list(idx[:, 7]) == list(idx[:, 0])
    assert len(set(idx[:, 1:6].ravel().tolist()) | set(idx[:, 8:].ravel().tolist())) == 3 * (len(s) - 3)


def test_past_eight_inputs_the_plain_explanation_serves(fitted):
    names = tuple(f"f{i}" for i in range(5))
    s0 = customers(4, 3)
    s = Summary(s0.frequency, s0.recency, s0.age, s0.monetary, np.random.default_rng(3).normal(size=(4, 5)), names)
    kept = fitted.extra_names, fitted.population
    fitted.extra_names, fitted.population = names, {**fitted.population, **{n: 0.0 for n in names}}
    try:
        with served(fitted, "corrected", False, 3):
            fitted.use_extra = True
            fitted.weights, fitted.mean, fitted.scale = [0.1] * 12, [0.0] * 11, [1.0] * 11
            fast = fitted.explain_many(s, [0, 2], 365, 0.1, top=9)
            with plain():
                ref = fitted.explain_many(s, [0, 2], 365, 0.1, top=9)
        assert fast == ref
    finally:
        fitted.extra_names, fitted.population = kept


@pytest.mark.parametrize(("method", "use_extra"), METHOD_CASES)
def test_frequent_flyers_are_valued_and_more_flights_are_worth_more(fitted, method, use_extra):
    """Thousands of repeat purchases used to overflow the hypergeometric functions (NaN); their Euler
    transformations keep every prediction finite, on both paths."""
    frequency = np.array([10.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0])
    age = np.full(6, 3650.0)
    s = Summary(frequency, age - 1.0, age, np.full(6, 120.0), np.zeros((6, 2)), NAMES)
    with served(fitted, method, use_extra, 1):
        fast = fitted.predict(s, 365, 0.1)
        with plain():
            ref = fitted.predict(s, 365, 0.1)
    for field in Prediction.__dataclass_fields__:
        assert np.all(np.isfinite(getattr(fast, field))), (method, field, getattr(fast, field))
        assert_close(getattr(fast, field), getattr(ref, field), f"{method} {field}")
    assert np.all(np.diff(fast.expected_purchases) > 0) and np.all(np.diff(fast.ltv) > 0), fast.ltv
    assert np.all(fast.probability_alive[1:] > 0.99)  # a hundred flights or more, the last a day ago


def test_a_corrected_models_purchases_and_value_grow_with_the_horizon(fitted):
    """Expected purchases over [0, H] cannot fall as H grows, nor can the undiscounted value: the correction reads its
    BG/NBD / Pareto/NBD input at the horizon it was learned at, so it is one multiplier a customer, on both paths.
    Read at the horizon asked, the ratio's growth over years with a negative weight on it (as the demo's fit learns)
    made values fall: hundreds of falling steps over these horizons for these customers."""
    assert fitted.reference_days > 0
    s = customers(300, 11)
    horizons = [7, 30, 90, 365, 730, 1000, 2000, 3650]
    for weight in (-2.0, -0.5, 0.5):  # on the standardised BG/NBD / Pareto/NBD input
        with served(fitted, "corrected", False, 0):
            fitted.weights = [*fitted.weights[:6], weight]
            fitted.__dict__.pop("_linear", None)
            fitted.__dict__.pop("_fast_linear", None)
            for fast in (True, False):
                LTVModel.fast = fast
                try:
                    runs = [fitted.predict(s, h, 0.0) for h in horizons]
                finally:
                    LTVModel.fast = True
                purchases = np.array([p.expected_purchases for p in runs])
                values = np.array([p.ltv for p in runs])
                assert np.all(np.diff(purchases, axis=0) >= -1e-9 * purchases[1:]), (weight, fast)
                assert np.all(np.diff(values, axis=0) >= -1e-9 * values[1:]), (weight, fast)
    assert LTVModel.from_bytes(fitted.to_bytes()).reference_days == fitted.reference_days
