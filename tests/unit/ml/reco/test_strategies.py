"""Each strategy on small examples, the blend, the weight search and list building."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from ml.reco import strategies as st
from ml.reco.blend import learn_weights, simplex
from ml.reco.interactions import Interactions, ItemMeta
from ml.reco.ranking import exclude, lexicographic, top_n, zscore_rows

DAY = 86400.0
CFG = st.RecoConfig(factors=4, als_iterations=3, coview_window=1, trending_window_s=DAY,
                    popularity_half_life_s=DAY, fbt_ttl_s=DAY)


def _inter(rows, n_users, n_items, purchase=None):
    u, i, t = zip(*rows, strict=True)
    return Interactions.build(np.array(u), np.array(i), np.array(t, dtype=float), n_users, n_items,
                              purchase=None if purchase is None else np.array(purchase))


def _fit(inter, meta=None, config=CFG):
    return st.RecoModel.fit(inter, meta, config)


def _ranked(model, inter, fn, user, n=10, excluded="seen"):
    ctx = st.UserContext.from_interactions(inter, np.array([user]), model.config)
    scores = fn(model, ctx)
    if excluded is not None:
        scores = exclude(scores, ctx.seen if excluded == "seen" else excluded)
    return top_n(scores, n)[0][0].tolist()


# Items 0..7. Users 0-3 watch 1 then 2 (1 and 2 co-viewed four times); item 5 is watched by
# everyone else once long ago (popular, not co-viewed with 1); user 9 has only watched item 1.
ROWS = [(u, 1, 10.0 * DAY + u) for u in range(4)] + [(u, 2, 10.0 * DAY + u + 0.5) for u in range(4)] \
    + [(u, 5, float(u)) for u in range(4, 9)] + [(9, 1, 10.0 * DAY + 100)]


def test_cf_recommends_what_was_co_viewed_with_the_recent_items():
    inter = _inter(ROWS, 10, 8)
    model = _fit(inter)
    assert model.coview[1, 2] == model.coview[2, 1] == 4.0
    assert _ranked(model, inter, st.cf, 9)[:2] == [2, 5]  # co-viewed first, then the popular fallback


def test_excluded_items_are_never_returned():
    inter = _inter(ROWS, 10, 8)
    model = _fit(inter)
    seen = st.UserContext.from_interactions(inter, np.array([0]), CFG).seen
    assert seen[0, 1] and seen[0, 2]
    for fn in (st.cf, st.trending, st.new_arrivals, st.frequently_bought_together, st.personalized,
               st.most_popular):
        items = _ranked(model, inter, fn, 0, n=8)
        assert 1 not in items and 2 not in items, fn.__name__
        assert items[-2:] == [-1, -1]  # 8 items asked for, 6 left: the rest is padding, never a seen item


def test_new_arrivals_lists_the_newest_items_first():
    inter = _inter([(0, 0, 100.0), (1, 1, 300.0), (2, 2, 200.0), (3, 2, 210.0)], 4, 5)
    model = _fit(inter)
    assert _ranked(model, inter, st.new_arrivals, 0, n=5, excluded=None)[:3] == [1, 2, 0]  # 3, 4: unknown age
    created = np.array([np.nan, np.nan, np.nan, 500.0, np.nan])  # a catalogue entry newer than any event
    model = _fit(inter, ItemMeta(created_at=created))
    assert _ranked(model, inter, st.new_arrivals, 0, n=2) == [3, 1]


def test_trending_counts_the_window_and_falls_back_to_all_time_popularity():
    # item 0: 5 events 10 days ago; item 1: 2 events now; item 2: 1 event now; item 3: 1 event 9 days ago.
    rows = [(u, 0, 0.0) for u in range(5)] + [(0, 1, 10 * DAY), (1, 1, 10 * DAY), (2, 2, 10 * DAY), (3, 3, DAY)]
    inter = _inter(rows, 5, 5)
    model = _fit(inter)
    assert _ranked(model, inter, st.trending, 4, n=4, excluded=None) == [1, 2, 0, 3]


def test_frequently_bought_together_pairs_purchases_only():
    # user 0 views 0, buys 1 and 2; user 1 buys 1 and views 3; user 2 buys 1 (anchor).
    rows = [(0, 0, 1.0), (0, 1, 2.0), (0, 2, 3.0), (1, 1, 1.0), (1, 3, 2.0), (2, 1, 5.0)]
    inter = _inter(rows, 3, 5, purchase=[False, True, True, True, False, True])
    model = _fit(inter)
    assert model.bought_together[1, 2] == model.bought_together[2, 1] > 0
    assert model.bought_together[0, 1] == 0 and model.bought_together[1, 3] == 0
    assert _ranked(model, inter, st.frequently_bought_together, 2)[0] == 2
    assert _ranked(model, inter, st.frequently_bought_together, 2, excluded=None)[:2] == [2, 1]


def test_content_based_scores_by_feature_cosine_and_needs_features():
    features = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=float))
    inter = _inter([(0, 0, 1.0), (1, 2, 1.0), (1, 3, 2.0), (2, 3, 3.0)], 3, 5)
    model = _fit(inter, ItemMeta(features=features))
    ranked = _ranked(model, inter, st.content_based, 0, n=5)
    assert ranked[:2] == [1, 4]  # the same feature, then a half match
    with pytest.raises(ValueError, match="item features"):
        st.content_based(_fit(inter), st.UserContext.from_interactions(inter, np.array([0]), CFG))


def test_personalized_with_only_the_coview_weight_ranks_as_coview():
    inter = _inter(ROWS, 10, 8)
    model = _fit(inter)
    ctx = st.UserContext.from_interactions(inter, np.arange(10), CFG)
    blend = st.personalized(model, ctx, (1.0, 0.0, 0.0, 0.0))
    assert np.allclose(blend, zscore_rows(st.coview_scores(model, ctx)))
    signals = st.blend_signals(model, ctx)
    assert len(signals) == len(st.BLEND_SIGNALS)
    assert np.allclose(signals[2].mean(axis=1), 0) and np.allclose(signals[2].std(axis=1), 1)
    recency = st.item_recency(model)
    assert recency[1] == 1.0 and recency[5] < recency[1] and recency[7] == 0.0  # item 7 was never seen


def test_the_strongest_anchor_is_the_reason_shown():
    inter = _inter(ROWS, 10, 8)
    model = _fit(inter)
    ctx = st.UserContext.from_interactions(inter, np.array([9]), CFG)
    assert st.strongest_anchor(ctx, model.coview, 0, np.array([2, 5])).tolist() == [1, -1]


def test_in_categories_matches_any_of_several():
    category = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]))
    assert st.in_categories(category, np.array([0, 2])).tolist() == [True, False, True, True]


def test_learn_weights_moves_to_the_informative_signal_and_keeps_the_seed_on_a_tie():
    rng = np.random.default_rng(0)
    users, items = 60, 30
    held = rng.integers(0, items, users)
    good = rng.normal(size=(users, items))
    good[np.arange(users), held] += 5.0  # signal 0 knows the answer
    noise = rng.normal(size=(users, items))
    seen = sp.csr_matrix((users, items))
    learned = learn_weights([zscore_rows(good), zscore_rows(noise)], seen, held, seed_weights=(0.0, 1.0))
    assert learned.weights[0] > 0.5 and learned.learned_is_better and learned.served == learned.weights
    assert learned.score[0] == 1.0 and learned.seed_score[0] < 0.5
    flat = np.zeros((users, items))
    tie = learn_weights([flat, flat], seen, held, seed_weights=(0.5, 0.5))
    assert not tie.learned_is_better and tie.served == (0.5, 0.5)


def test_simplex_grid_sums_to_one():
    grid = simplex(4, 0.1)
    assert len(grid) == 286 and all(abs(sum(w) - 1) < 1e-9 for w in grid)
    assert (0.4, 0.3, 0.2, 0.1) in grid


def test_lexicographic_breaks_ties_by_the_second_key_only():
    s = lexicographic(np.array([[1.0, 1.0, 0.0, 1.0]]), np.array([5.0, 7.0, 9.0, 5.0]))
    assert s[0, 1] > s[0, 0] == s[0, 3] > s[0, 2]


def test_item_recency_halves_each_half_life_since_the_items_latest_event_and_is_0_for_items_never_seen():
    # Item 0 last seen now, item 1 one half-life (7 days) before, item 2 two before, item 3 never.
    rows = [(0, 0, 20.0 * DAY), (1, 1, 13.0 * DAY), (2, 2, 6.0 * DAY), (3, 0, 1.0 * DAY)]
    model = _fit(_inter(rows, 4, 4), config=st.RecoConfig(factors=4, als_iterations=3, recency_half_life_s=7 * DAY))
    assert model.now == 20.0 * DAY
    np.testing.assert_allclose(st.item_recency(model), [1.0, 0.5, 0.25, 0.0])


def test_recency_moves_the_blend_toward_items_active_lately():
    # Two items alike in every other signal (one view each, by strangers); only when each was last seen differs.
    rows = [(0, 0, 1.0 * DAY), (1, 1, 30.0 * DAY), (2, 2, 30.0 * DAY)]
    model = dataclasses.replace(_fit(_inter(rows, 3, 3)), embeddings=None)
    ctx = st.UserContext.from_interactions(_inter(rows, 3, 3), np.array([2]), model.config)
    only_recency = st.personalized(model, ctx, (0.0, 0.0, 0.0, 1.0))[0]
    assert only_recency[1] > only_recency[0]
