"""Features on event time: co-occurrence both ways, decay, windows, profiles, item-item cosine."""

import numpy as np
import pytest
import scipy.sparse as sp

from ml.reco import signals
from ml.reco.interactions import Interactions

H = 3600.0


def _inter(rows, n_users=3, n_items=6, weights=None, purchase=None):
    u, i, t = zip(*rows, strict=True)
    return Interactions.build(np.array(u), np.array(i), np.array(t, dtype=float), n_users, n_items,
                              None if weights is None else np.array(weights, dtype=float),
                              None if purchase is None else np.array(purchase))


def test_decay_halves_at_the_half_life_and_zero_disables_it():
    assert signals.decay(np.array([0.0, H, 2 * H]), H).tolist() == [1.0, 0.5, 0.25]
    assert signals.decay(np.array([0.0, 1e9]), 0.0).tolist() == [1.0, 1.0]


def test_popularity_decays_from_now_and_counts_only_its_window():
    inter = _inter([(0, 1, 0.0), (1, 1, 2 * H), (2, 2, 2 * H)])
    assert signals.popularity(inter).tolist()[:3] == [0.0, 2.0, 1.0]
    pop = signals.popularity(inter, now=2 * H, half_life_s=2 * H)
    assert pop[1] == pytest.approx(1.5)  # one event now (1) and one a half-life ago (0.5)
    windowed = signals.popularity(inter, now=2 * H, window_s=H)
    assert windowed[1] == 1.0 and windowed[2] == 1.0


def test_cooccurrence_counts_both_ways_within_the_window():
    # user 0 sees 1, 2, 3 in order; user 1 sees 1 then 2. Window 1: only consecutive events pair.
    inter = _inter([(0, 1, 1.0), (0, 2, 2.0), (0, 3, 3.0), (1, 1, 1.0), (1, 2, 5.0)])
    c = signals.cooccurrence(inter, window=1).toarray()
    assert c[1, 2] == c[2, 1] == 2.0
    assert c[2, 3] == c[3, 2] == 1.0
    assert c[1, 3] == 0.0  # two apart: outside a window of 1
    assert np.array_equal(c, c.T) and np.all(np.diag(c) == 0)
    assert signals.cooccurrence(inter, window=2).toarray()[1, 3] == 1.0


def test_cooccurrence_ttl_decay_weights_and_negative_feedback():
    inter = _inter([(0, 1, 0.0), (0, 2, H), (0, 3, 10 * H), (0, 4, 10 * H)], weights=[1, 10, 1, -5])
    c = signals.cooccurrence(inter, window=5, ttl_s=2 * H).toarray()
    assert c[1, 2] == pytest.approx(np.sqrt(10))  # geometric mean of a view (1) and a purchase (10)
    assert c[2, 3] == 0.0  # nine hours apart: beyond the TTL
    assert c[3, 4] == 0.0 and c[4].sum() == 0  # a dismissal pairs with nothing
    decayed = signals.cooccurrence(inter, window=5, half_life_s=9 * H, now=10 * H).toarray()
    assert decayed[1, 2] == pytest.approx(np.sqrt(10) * 0.5)  # the newer event is one half-life old
    only = signals.cooccurrence(inter, window=5, mask=np.array([True, False, True, True])).toarray()
    assert only[1, 2] == 0.0 and only[1, 3] == 1.0


def test_user_profiles_take_the_last_n_weighted_by_position_and_age():
    inter = _inter([(0, 1, 0.0), (0, 2, H), (0, 3, 2 * H), (1, 4, 0.0)])
    p = signals.user_profiles(inter, np.array([0, 2, 1]), last_n=2, position_decay=0.5).toarray()
    assert p[0].tolist() == [0, 0, 0.5, 1.0, 0, 0]
    assert p[1].sum() == 0  # a user without events
    assert p[2, 4] == 1.0
    aged = signals.user_profiles(inter, np.array([0]), last_n=3, half_life_s=H).toarray()
    assert aged[0, 1:4].tolist() == [0.25, 0.5, 1.0]


def test_item_knn_matches_a_brute_force_cosine_and_keeps_k_neighbours():
    rng = np.random.default_rng(3)
    x = sp.csr_matrix((rng.random((40, 30)) < 0.2).astype(float))
    dense = x.toarray()
    norms = np.linalg.norm(dense, axis=0)
    ref = (dense.T @ dense) / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(ref, 0.0)
    knn = signals.item_knn(x, k=5, block=7).toarray()  # blocks that do not divide 30
    for j in range(30):
        kept = np.flatnonzero(knn[:, j])
        assert len(kept) <= 5
        assert np.allclose(knn[kept, j], ref[kept, j])
        if len(kept):
            assert ref[:, j].max() == pytest.approx(knn[:, j].max())
            assert np.sort(ref[:, j])[-5] <= knn[kept, j].min() + 1e-12
    assert np.allclose(signals.item_knn(x, k=5).toarray(), knn)
