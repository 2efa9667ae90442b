"""Training the bid scorer on synthetic logs with a known click probability."""

import numpy as np
import pytest

from ml import features
from ml.model import CTR_MAX, SpikingNet, forward, make_default, outputs
from ml.providers import build_providers
from ml.training import bidnet, metrics
from tests.unit.ml.training.synthetic import rows

TRAIN_ROWS, TEST_ROWS = 200_000, 100_000


@pytest.fixture(scope="module")
def data():
    return rows(TRAIN_ROWS, seed=1), rows(TEST_ROWS, seed=2)


@pytest.fixture(scope="module")
def trained(data):
    (x, y, t, _), _ = data
    return bidnet.train(x, y, t, seed=0, epochs=20)


def test_training_lifts_auc_from_the_default_towards_the_truth(data, trained):
    _, (xs, ys, _, ps) = data
    random_m = metrics.evaluate(make_default(), xs, ys)
    trained_m = metrics.evaluate(trained.net, xs, ys)
    truth_m = metrics.metrics_of(ps, ys)
    print(f"\nAUC random {random_m['auc']:.4f} trained {trained_m['auc']:.4f} truth {truth_m['auc']:.4f}"
          f"\nlog-loss random {random_m['log_loss']:.5f} trained {trained_m['log_loss']:.5f}"
          f" truth {truth_m['log_loss']:.5f}"
          f"\nECE random {random_m['ece']:.5f} trained {trained_m['ece']:.5f} truth {truth_m['ece']:.5f}"
          f"\nholdout {trained.holdout}\nuncalibrated {trained.holdout_uncalibrated}"
          f"\nepochs {trained.epochs} best {trained.best_epoch} platt {trained.calibration}")
    assert random_m["auc"] < 0.58
    assert trained_m["auc"] > random_m["auc"] + 0.1
    assert trained_m["auc"] >= truth_m["auc"] - 0.04
    assert trained_m["log_loss"] < random_m["log_loss"]
    assert trained_m["log_loss"] < truth_m["log_loss"] * 1.03
    assert trained_m["ece"] < 0.003
    assert trained.best_epoch >= 1


def test_the_split_is_by_time_and_the_holdout_is_the_newest(data, trained):
    (_, _, t, _), _ = data
    s = trained.split
    assert t[s.train].max() <= t[s.valid].min() and t[s.valid].max() <= t[s.holdout].min()
    assert len(s.train) + len(s.valid) + len(s.holdout) == len(t)
    assert abs(len(s.holdout) / len(t) - 0.2) < 0.01


def test_split_keeps_equal_times_together():
    times = np.repeat(np.arange(10.0), 10)
    s = bidnet.time_split(times, 0.25, 0.25)
    assert set(times[s.holdout]).isdisjoint(times[s.valid]) and set(times[s.valid]).isdisjoint(times[s.train])


def test_reserved_weights_stay_zero_and_shapes_fit(data, trained):
    (x, y, t, _), _ = data
    dirty = x[:20_000].copy()
    dirty[:, 200] = 1.0  # even with data in the reserved block
    result = bidnet.train(dirty, y[:20_000], t[:20_000], seed=0, epochs=1)
    for net in (trained.net, result.net):
        assert not np.any(net.w1[bidnet.RESERVED])
        assert net.w1.shape == (features.DIM, 64) and net.w2.shape == (64, 3) and net.theta == make_default().theta
    assert result.notes


def test_deterministic_per_seed(data):
    (x, y, t, _), _ = data
    a = bidnet.train(x[:30_000], y[:30_000], t[:30_000], seed=7, epochs=2, patience=5)
    b = bidnet.train(x[:30_000], y[:30_000], t[:30_000], seed=7, epochs=2, patience=5)
    c = bidnet.train(x[:30_000], y[:30_000], t[:30_000], seed=8, epochs=2, patience=5)
    for name in ("w1", "b1", "w2", "b2"):
        assert np.array_equal(getattr(a.net, name), getattr(b.net, name))
    assert not np.array_equal(a.net.w1, c.net.w1)


def test_server_scoring_matches_forward(data, trained):
    """The compiled kernel behind the cpu provider (what the batcher calls) gives forward()'s outputs."""
    _, (xs, _, _, _) = data
    net = trained.net
    n_req, per = 64, 5
    users = np.ascontiguousarray(xs[: n_req * per: per].copy())
    users[:, features.CANDIDATE_COLUMNS] = 0.0
    cands = [np.ascontiguousarray(xs[k * per:(k + 1) * per][:, features.CANDIDATE_COLUMNS]) for k in range(n_req)]
    full = np.concatenate([features.candidate_matrix(users[k], cands[k]) for k in range(n_req)])
    want = outputs(forward(net, full))
    for name, provider in build_providers().items():
        got = provider.score(net, users, cands)
        tol = 1e-5 if name == "cpu" else provider.tolerance * 3
        for g, w in zip(got, want, strict=True):
            assert np.mean(np.abs(g - w)) <= tol, name
    got = build_providers()["cpu"].score(net, users, cands)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_save_load_round_trip(trained, tmp_path):
    path = tmp_path / "trained.npz"
    trained.net.save(path)
    back = SpikingNet.load(path)
    assert back.version == trained.net.version and back.theta == trained.net.theta
    for name in ("w1", "b1", "w2", "b2"):
        assert np.array_equal(getattr(back, name), getattr(trained.net, name))


def test_heads_follow_expected_value(data, trained):
    _, (xs, _, _, _) = data
    score, ctr, bid = outputs(forward(trained.net, xs[:20_000]))
    np.testing.assert_allclose(bid, ctr / CTR_MAX, atol=1e-5)           # default click value 1 / CTR_MAX
    np.testing.assert_allclose(score, 2 * ctr / CTR_MAX - 1, atol=1e-5)  # ranks by predicted CTR
    spikes = (xs[:20_000] @ trained.net.w1 + trained.net.b1 > trained.net.theta).astype(np.float32)
    for value in (10.0, 40.0):
        net, err = bidnet.set_heads(trained.net, spikes, click_value=value)
        _, ctr2, bid2 = outputs(forward(net, xs[:20_000]))
        np.testing.assert_array_equal(ctr2, ctr)
        print(f"click value {value}: mean |bid - min(1, ctr*value)| = {err:.4f}")
        limit = 0.03 if value * CTR_MAX < 1 else 0.1  # a saturating target is only approximated
        assert err < limit
        assert np.mean(np.abs(bid2 - np.minimum(1, ctr * value))) < limit
        assert np.corrcoef(bid2, ctr)[0, 1] > 0.85


def test_clicks_above_ctr_max_saturate_without_blowing_up():
    x, _, t, _ = rows(30_000, seed=5)
    rng = np.random.default_rng(0)
    hot = x[:, 64 + 5] > 0  # one segment clicks at 20%, four times what the head can say
    y = (rng.random(len(x)) < np.where(hot, 0.2, 0.005)).astype(np.int8)
    r = bidnet.train(x, y, t, seed=0, epochs=20, batch=512)
    _, ctr, _ = outputs(forward(r.net, x))
    assert all(np.all(np.isfinite(getattr(r.net, n))) for n in ("w1", "b1", "w2", "b2"))
    print(f"\nhot segment (20% clicks): mean ctr {ctr[hot].mean():.4f}; others (0.5%): {ctr[~hot].mean():.4f};"
          f" saturated share {r.saturated:.3f}")
    assert ctr[hot].mean() > 0.6 * CTR_MAX and ctr[~hot].mean() < 0.015
    assert ctr.max() <= CTR_MAX and r.saturated > 0.05


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        bidnet.train(np.zeros((10, 5), np.float32), np.zeros(10), np.arange(10.0))
    with pytest.raises(ValueError):
        bidnet.train(np.zeros((10, 256), np.float32), np.full(10, 2), np.arange(10.0))
