"""The served model's API: summary, explanations, serialisation, extra features, too little data."""

from __future__ import annotations

import numpy as np
import pytest

from ml.ltv import LTVModel, Summary, fit, fit_transactions, holdout, summarise
from tests.unit.ml.ltv.test_simulated import PN, simulate


@pytest.fixture(scope="module")
def data():
    cust, day, value, cal, hold = simulate("pnbd", PN, 1500, seed=11)
    return cust, np.floor(day), value, cal, hold


@pytest.fixture(scope="module")
def fitted(data):
    cust, day, value, cal, _ = data
    return fit_transactions(cust, day, value, cal)


def test_summarise_merges_same_day_purchases_and_skips_later_customers():
    cust = np.array(["a", "a", "a", "a", "b", "c"])
    day = np.array([10.0, 10.5, 20.0, 40.0, 15.0, 99.0])
    value = np.array([5.0, 5.0, 30.0, 50.0, 7.0, 1.0])
    ids, s = summarise(cust, day, value, now_day=50.0,
                       extra=(np.array(["b", "zz"]), np.array([[3.0], [9.0]])), extra_names=("tier",))
    assert list(ids) == ["a", "b"]  # c first bought after "now"
    np.testing.assert_array_equal(s.frequency, [2.0, 0.0])  # the two orders of day 10 are one purchase
    np.testing.assert_array_equal(s.recency, [30.0, 0.0])
    np.testing.assert_array_equal(s.age, [40.0, 35.0])
    np.testing.assert_array_equal(s.monetary, [40.0, 0.0])  # mean of the repeat purchases only
    assert s.extra is not None
    np.testing.assert_array_equal(s.extra[:, 0], [0.0, 3.0])
    assert s.extra_names == ("tier",)


def test_too_little_data_is_a_clear_value_error():
    s = Summary(np.array([1.0, 0.0]), np.array([3.0, 0.0]), np.array([10.0, 10.0]), np.array([5.0, 0.0]))
    with pytest.raises(ValueError, match="too little data.*2 customers, 1 with a repeat purchase"):
        fit(s)


def test_edge_inputs_predict_sensibly_or_fail_clearly(fitted):
    _, s, model = fitted
    empty = model.predict(s.take(np.array([], dtype=int)), 365, 0.1)
    assert empty.ltv.shape == (0,)
    now = model.predict(s.take(np.arange(3)), 0, 0.1)
    np.testing.assert_array_equal(now.ltv, 0.0)
    np.testing.assert_array_equal(now.ltv_upper, 0.0)
    refunded = Summary(np.array([2.0]), np.array([50.0]), np.array([100.0]), np.array([-30.0]))
    assert model.predict(refunded, 365, 0.1).expected_spend[0] > 0
    with pytest.raises(ValueError, match="horizon_days"):
        model.predict(s, -1, 0.1)
    with pytest.raises(ValueError, match="annual_discount_rate"):
        model.explain(s, 0, 365, -1.0)


def test_explain_attributions_follow_the_customer(fitted):
    _, s, model = fitted
    frequent = int(np.argmax(s.frequency - (s.age - s.recency) / 7))  # many purchases, bought lately
    lapsed = int(np.flatnonzero((s.frequency == 0) & (s.age > np.median(s.age)))[0])
    good = dict((n, c) for n, c, _ in model.explain(s, frequent, 365, 0.1))
    bad = dict((n, c) for n, c, _ in model.explain(s, lapsed, 365, 0.1))
    assert good["frequency"] > 0 and good["recency"] > 0
    assert bad["frequency"] < 0
    assert good != bad
    rows = model.explain(s, frequent, 365, 0.1, top=2)
    assert len(rows) == 2 and abs(rows[0][1]) >= abs(rows[1][1])
    assert rows[0][2] == {"frequency": s.frequency, "recency": s.recency, "age": s.age,
                          "monetary": s.monetary}[rows[0][0]][frequent]
    # Shapley values add up to this customer's LTV minus the average customer's.
    full = model.explain(s, frequent, 365, 0.1, top=10)
    avg = Summary(*(np.array([model.population[n]]) for n in ("frequency", "recency", "age", "monetary")))
    own = model.predict(s.take(np.array([frequent])), 365, 0.1).ltv[0]
    assert sum(c for _, c, _ in full) == pytest.approx(own - model.point_ltv(avg, 365, 0.1)[0], rel=1e-9)


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "plain"])
def test_explanations_add_up_for_customers_without_a_repeat_purchase_under_every_method(fitted, monkeypatch, fast):
    """A new customer (everything 0) and a one-time buyer: their contributions sum to their value minus the average
    customer's whichever model serves, the correction (which reads their monetary 0) included."""
    _, s, model = fitted
    monkeypatch.setattr(LTVModel, "fast", fast)
    once = int(np.flatnonzero(s.frequency == 0)[0])
    customers = Summary(np.array([0.0, 0.0]), np.array([0.0, 0.0]), np.array([0.0, s.age[once]]),
                        np.array([0.0, 0.0]))
    avg = Summary(*(np.array([model.population[n]]) for n in ("frequency", "recency", "age", "monetary")))
    served = model.method
    try:
        for method in ("pareto/nbd", "bg/nbd", "mixture", "corrected"):
            model.method = method
            values = model.predict(customers, 365, 0.1).ltv
            for row in range(2):
                found = model.explain(customers, row, 365, 0.1, top=10)
                assert sum(c for _, c, _ in found) == pytest.approx(
                    values[row] - model.point_ltv(avg, 365, 0.1)[0], rel=1e-9, abs=1e-6), (method, row)
    finally:
        model.method = served


def test_explaining_many_rows_at_once_gives_each_rows_explanation(fitted):
    _, s, model = fitted
    rows, served = [0, 3, 7, 11, 19], model.method
    try:
        for method in ("pareto/nbd", "bg/nbd", "mixture", "corrected"):
            model.method = method
            many = model.explain_many(s, rows, 365, 0.1, top=10)
            for row, found in zip(rows, many, strict=True):
                alone = model.explain(s.take(np.array([row])), 0, 365, 0.1, top=10)
                assert [(n, v) for n, _, v in found] == [(n, v) for n, _, v in alone]
                assert [c for _, c, _ in found] == pytest.approx([c for _, c, _ in alone], rel=1e-6, abs=1e-9)
    finally:
        model.method = served


def test_coalitions_sharing_frequency_recency_and_age_share_the_base_models_exactly(fitted, monkeypatch):
    """explain() runs the base models once per distinct (frequency, recency, age) of the coalitions; the plain
    computation, every coalition row on its own, is the reference."""
    _, s, model = fitted
    rows, served, plain = list(range(0, 40, 3)), model.method, LTVModel.point_ltv
    monkeypatch.setattr(LTVModel, "fast", False)  # the plain path (the compiled one: tests/unit/ml/ltv/test_kernels.py)
    try:
        for method in ("pareto/nbd", "bg/nbd", "mixture", "corrected"):
            model.method = method
            shared = model.explain_many(s, rows, 365, 0.1, top=10)
            with monkeypatch.context() as patched:
                patched.setattr(LTVModel, "point_ltv", lambda self, s_, h, r, same=None: plain(self, s_, h, r))
                reference = model.explain_many(s, rows, 365, 0.1, top=10)
            assert shared == reference
    finally:
        model.method = served


def test_serialisation_round_trip_predicts_identically(fitted):
    _, s, model = fitted
    for method in ("pareto/nbd", "bg/nbd", "mixture", "corrected"):
        m = LTVModel.from_bytes(model.to_bytes())
        m.method = model.method = method
        a, b = model.predict(s, 200, 0.08), LTVModel.from_bytes(m.to_bytes()).predict(s, 200, 0.08)
        for field in a.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    with pytest.raises(ValueError, match="not a serialised"):
        LTVModel.from_bytes(b'{"format": "other"}')


def test_an_informative_extra_feature_is_used_and_a_noise_one_is_not(data):
    cust, day, value, cal, hold = data
    ids = np.unique(cust)
    # The carrier's loyalty tier tracks how often the customer flies: purchases over the whole period.
    later = np.log1p(np.bincount(cust[(day > cal - 120) & (day <= cal + hold)], minlength=len(ids)))
    noise = np.random.default_rng(0).normal(size=len(ids))
    for feature, used in ((later, True), (noise, False)):
        _, s, model = fit_transactions(cust, day, value, cal, extra=(ids, feature[:, None]), extra_names=("tier",))
        assert model.inner["corrected+extra"] < model.inner["corrected"] or not used
        assert model.uses_extra is (used and model.method == "corrected")
        pred = model.predict(s, hold, 0.1)
        assert np.all(np.isfinite(pred.ltv))
        if model.uses_extra:
            assert "tier" in [n for n, _, _ in model.explain(s, 0, hold, 0.1, top=10)]


def test_holdout_report_has_the_served_row_and_the_baselines(data):
    cust, day, value, cal, hold = data
    report = holdout(cust, day, value, cal, hold)
    names = [r["name"] for r in report["rows"]]
    assert names[:2] == ["BG/NBD", "Pareto/NBD"] and names[-1] == "contrail"
    assert report["customers"] == len(np.unique(cust)) and report["total_actual"] > 0
    for r in report["rows"]:
        assert r["mae"] <= r["rmse"] and r["total_predicted"] > 0
    assert report["spend"]["customers"] > 0
