"""Parameter recovery, predictions and interval coverage on customers simulated from the models themselves."""

from __future__ import annotations

import numpy as np
import pytest

from ml.ltv import Summary, base, fit, fit_transactions, summarise
from ml.ltv.model import WEEK, _bg_count_moments


def simulate(model: str, params: tuple[float, float, float, float], n: int, seed: int, cal_weeks: float = 40.0,
             hold_weeks: float = 40.0, spend: tuple[float, float, float] = (6.0, 4.0, 15.0),
             cohort_weeks: float = 12.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Transactions (customer, day, value) of n customers acquired over the first `cohort_weeks`, and
    (calibration end day, holdout days). BG/NBD: leave after a repeat purchase with probability p;
    Pareto/NBD: leave after an exponential lifetime."""
    rng = np.random.default_rng(seed)
    r, alpha, c, d = params
    lam = rng.gamma(r, 1 / alpha, n)
    start = rng.uniform(0, cohort_weeks, n)
    end = cal_weeks + hold_weeks
    p_, q_, g_ = spend
    nu = rng.gamma(q_, 1 / g_, n)
    customers, days, values = [], [], []
    if model == "bgnbd":
        drop = rng.beta(c, d, n)
    else:
        life = rng.exponential(1 / rng.gamma(c, 1 / d, n))
    for i in range(n):
        span = end - start[i]
        k = rng.poisson(lam[i] * span)
        times = np.sort(rng.uniform(0, span, k))
        if model == "bgnbd":
            g = rng.geometric(drop[i])  # the repeat purchase after which this customer leaves
            times = times[:g]
        else:
            times = times[times < life[i]]
        t = np.r_[0.0, times] + start[i]
        customers.append(np.full(len(t), i))
        days.append(t * WEEK)
        values.append(rng.gamma(p_, 1 / nu[i], len(t)))
    return (np.concatenate(customers), np.concatenate(days), np.concatenate(values), cal_weeks * WEEK,
            hold_weeks * WEEK)


def _split(data: tuple[np.ndarray, np.ndarray, np.ndarray, float, float]
           ) -> tuple[Summary, np.ndarray, np.ndarray]:
    cust, day, value, cal, hold = data
    # Continuous times: one purchase per transaction (no two fall on the same instant).
    ids, s = summarise(cust, day * 1000, value, cal * 1000)
    s = Summary(s.frequency, s.recency / 1000, s.age / 1000, s.monetary)
    later = (day > cal) & (day <= cal + hold)
    actual = np.bincount(cust[later], minlength=len(ids)).astype(float)
    spend = np.bincount(cust[later], weights=value[later], minlength=len(ids))
    return s, actual, spend


BG = (0.5, 6.0, 0.8, 3.0)
PN = (0.6, 8.0, 0.7, 12.0)


@pytest.fixture(scope="module")
def bg_data():
    return _split(simulate("bgnbd", BG, 4000, seed=3))


@pytest.fixture(scope="module")
def pn_data():
    return _split(simulate("pnbd", PN, 4000, seed=4))


def _close(fitted, true, rel):
    for f, t in zip(fitted, true, strict=True):
        assert abs(f - t) <= rel * t, (fitted, true)


def test_bgnbd_recovers_its_parameters_and_the_future(bg_data):
    s, actual, _ = bg_data
    x, tx, T = s.frequency, s.recency / WEEK, s.age / WEEK
    params = base.fit_bgnbd(x, tx, T)
    _close(params[:2], BG[:2], 0.3)
    _close(params[2:], BG[2:], 0.45)  # (a, b) are less sharply identified than (r, alpha)
    e = base.bgnbd_expected(params, 40.0, x, tx, T)
    assert abs(e.sum() / actual.sum() - 1) < 0.08
    # Customers ranked by expectation: the top quintile buys more than the bottom one, as predicted.
    top = e >= np.quantile(e, 0.8)
    assert abs(e[top].sum() / actual[top].sum() - 1) < 0.12


def test_pareto_nbd_recovers_its_parameters_and_the_future(pn_data):
    s, actual, _ = pn_data
    x, tx, T = s.frequency, s.recency / WEEK, s.age / WEEK
    params = base.fit_pnbd(x, tx, T)
    _close(params[:2], PN[:2], 0.3)
    _close(params[2:], PN[2:], 0.6)  # dropout heterogeneity is weakly identified in 40 weeks
    e = base.pnbd_expected(params, 40.0, x, tx, T)
    assert abs(e.sum() / actual.sum() - 1) < 0.08


def test_gamma_gamma_recovers_spend_parameters(bg_data):
    s, _, _ = bg_data
    p, q, g = base.fit_gg(s.frequency, s.monetary)
    # The population mean spend p * gamma / (q - 1) is what the LTV uses; it is the sharp quantity.
    assert abs(p * g / (q - 1) - 6.0 * 15.0 / 3.0) / 30.0 < 0.1
    _close((p, q, g), (6.0, 4.0, 15.0), 0.5)


@pytest.mark.parametrize("which", ["bgnbd", "pnbd"])
def test_served_model_predicts_the_future_and_its_80pct_interval_covers_about_80pct(which):
    cust, day, value, cal, hold = simulate(which, BG if which == "bgnbd" else PN, 4000, seed=5)
    day = np.floor(day)  # whole days, as served: same-day purchases merge
    ids, s, model = fit_transactions(cust, day, value, cal)
    ids_all, s_all = summarise(cust, day, value, cal + hold)
    at = np.searchsorted(ids_all, ids)
    actual = s_all.frequency[at] - s.frequency
    spend = s_all.monetary[at] * s_all.frequency[at] - s.monetary * s.frequency
    pred = model.predict(s, hold, 0.0)
    assert abs(pred.expected_purchases.sum() / actual.sum() - 1) < 0.1, (model.method, model.inner)
    assert abs(pred.ltv.sum() / spend.sum() - 1) < 0.12
    inside = (spend >= pred.ltv_lower - 1e-9) & (spend <= pred.ltv_upper + 1e-9)
    assert 0.7 <= inside.mean() <= 0.9, inside.mean()
    assert np.all(pred.ltv_lower <= pred.ltv_upper)  # (a skewed LTV's mean may pass its 80% quantile)
    assert np.all((pred.confidence >= 0) & (pred.confidence <= 1))
    assert np.all((pred.probability_alive >= 0) & (pred.probability_alive <= 1))
    # Confidence means something: the realised value is within +-50% of the point more often when it is high.
    near = np.abs(spend - pred.ltv) <= 0.5 * pred.ltv
    high = pred.confidence >= np.median(pred.confidence)
    assert near[high].mean() > near[~high].mean()


def test_count_distribution_mean_is_the_closed_form_expectation():
    x = np.array([0.0, 1.0, 4.0, 20.0])
    tx, T = np.array([0.0, 10.0, 30.0, 38.0]), np.array([40.0, 40.0, 35.0, 39.0])
    alive = base.bgnbd_alive(BG, x, tx, T)
    _, mean, second = _bg_count_moments(BG, x, T, alive, np.full(4, 40.0))
    np.testing.assert_allclose(mean, base.bgnbd_expected(BG, 40.0, x, tx, T), rtol=1e-6)
    assert np.all(second >= mean ** 2)


def test_discounting_lowers_ltv_and_longer_horizons_raise_it(pn_data):
    s, _, _ = pn_data
    model = fit(s)
    base_ltv = model.predict(s, 365, 0.0).ltv
    assert np.all(model.predict(s, 365, 0.2).ltv < base_ltv + 1e-12)
    assert np.all(model.predict(s, 730, 0.0).ltv >= base_ltv)
