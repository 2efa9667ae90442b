"""AUC, log-loss, the reliability curve, calibration and the promotion rule."""

import math

import numpy as np
import pytest

from ml.model import forward, make_default
from ml.training import bidnet, metrics
from tests.unit.ml.training.synthetic import rows


def _auc_pairs(s, y):
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 300).astype(float)  # many ties
    y = (rng.random(300) < 0.3).astype(int)
    assert metrics.auc(s, y) == pytest.approx(_auc_pairs(s, y))
    assert metrics.auc(np.ones(50), y[:50]) == 0.5
    assert metrics.auc(np.arange(4.0), np.array([0, 0, 1, 1])) == 1.0
    assert math.isnan(metrics.auc(np.arange(4.0), np.zeros(4)))


def test_log_loss_and_reliability():
    y = np.array([0, 1, 0, 1])
    assert metrics.log_loss(np.full(4, 0.5), y) == pytest.approx(math.log(2))
    rng = np.random.default_rng(1)
    p = rng.random(100_000) * 0.05
    y = rng.random(100_000) < p
    curve = metrics.reliability(p, y, bins=10)
    assert curve.count.sum() == 100_000 and len(curve.rows()) == 10
    assert curve.ece() < 0.002
    assert metrics.ece(p * 2, y) > 0.02


def test_calibration_improves_ece():
    x, y, _, _ = rows(60_000, seed=3)
    net = make_default()
    z = forward(net, x)[:, 1]
    base = metrics.evaluate(net, x, y)
    calibrated, (a, b) = bidnet.calibrate(net, x[:30_000], y[:30_000])
    after = metrics.evaluate(calibrated, x[30_000:], y[30_000:])
    before = metrics.evaluate(net, x[30_000:], y[30_000:])
    print(f"\nECE before {before['ece']:.5f} after {after['ece']:.5f}; platt a={a:.3f} b={b:.3f}")
    assert after["ece"] < before["ece"] / 2
    assert after["log_loss"] < before["log_loss"]
    assert base["auc"] == pytest.approx(metrics.auc(z, y))  # a > 0: calibration keeps the ranking
    assert after["auc"] == pytest.approx(before["auc"], abs=1e-4)  # float32 rounding may split ties


def test_promotion_rule():
    x, y, _, p = rows(50_000, seed=4)
    current = metrics.metrics_of(np.clip(p * 1.3, 0, 1), y)
    truth = metrics.metrics_of(p, y)
    worse = metrics.metrics_of(np.full(len(y), y.mean()), y)
    assert metrics.better(truth, current)
    assert not metrics.better(current, truth)
    assert not metrics.better(worse, current)
    assert not metrics.better(current, current)
    with pytest.raises(ValueError):
        metrics.better(truth, metrics.metrics_of(p[:-1], y[:-1]))


def test_promotion_refuses_a_worse_trained_model():
    x, y, t, _ = rows(60_000, seed=6)
    good = bidnet.train(x, y, t, seed=0, epochs=6)
    h = good.split.holdout
    default = metrics.evaluate(make_default(), x[h], y[h])
    assert metrics.better(good.holdout, default)
    assert not metrics.better(default, good.holdout)
