"""The real-time features kept per event equal ml/reco's batch definitions over the same events."""

import numpy as np
import pytest

from app.reco.features import LiveFeatures
from ml.reco import signals
from ml.reco.interactions import Interactions
from ml.reco.strategies import RecoConfig, UserContext
from state.reco import Interaction, RecoItem

KINDS = [("product_view", 1.0), ("click", 3.0), ("cart_add", 5.0), ("purchase", 10.0), ("dismiss", -5.0)]


def history(seed: int = 0, users: int = 30, items: int = 25, events: int = 600) -> list[Interaction]:
    """Random events in time order (one clock for everyone, as live traffic arrives)."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 10 * 86_400, events)) + 1_700_000_000
    rows = []
    for t in times:
        kind, weight = KINDS[rng.choice(len(KINDS), p=[0.5, 0.2, 0.1, 0.1, 0.1])]
        rows.append(Interaction(f"u{rng.integers(users)}", f"i{rng.integers(items)}", kind, weight, float(t)))
    return rows


def batch(rows: list[Interaction], live: LiveFeatures) -> tuple[Interactions, dict[str, int]]:
    users: dict[str, int] = {}
    u = [users.setdefault(r.user_id, len(users)) for r in rows]
    i = [live.items.index[r.item_id] for r in rows]
    return Interactions.build(np.array(u), np.array(i), np.array([r.at for r in rows]), len(users),
                              len(live.items), np.array([r.weight for r in rows]),
                              np.array([r.kind == "purchase" for r in rows])), users


@pytest.mark.parametrize("coview_ttl_s, half_life_s", [(0.0, 0.0), (86_400.0, 3 * 86_400.0)])
def test_incremental_features_equal_the_batch_signals(coview_ttl_s, half_life_s):
    config = RecoConfig(coview_window=10, coview_ttl_s=coview_ttl_s, popularity_half_life_s=half_life_s)
    live = LiveFeatures(config, recent_ttl_s=0.0, max_users=1_000)
    rows = history()
    live.rebuild(rows)
    model = live.model()
    inter, users = batch(rows, live)
    assert model.now == inter.now
    np.testing.assert_allclose(model.popularity, signals.popularity(inter, inter.now))
    np.testing.assert_allclose(model.decayed_popularity, signals.popularity(inter, inter.now, half_life_s))
    np.testing.assert_allclose(model.trending, signals.popularity(inter, inter.now, half_life_s,
                                                                  config.trending_window_s))
    expected = signals.cooccurrence(inter, 10, coview_ttl_s, 0.0, inter.now)
    np.testing.assert_allclose(model.coview.toarray(), expected.toarray(), rtol=1e-5)
    fbt = signals.cooccurrence(inter, config.fbt_window, config.fbt_ttl_s, 0.0, inter.now, mask=inter.purchase)
    np.testing.assert_allclose(model.bought_together.toarray(), fbt.toarray(), rtol=1e-5)
    np.testing.assert_allclose(model.last_seen, signals.last_seen(inter))
    for user_id in ("u0", "u7"):
        ctx = live.context(live.users.peek(user_id))
        ref = UserContext.from_interactions(inter, np.array([users[user_id]]), config)
        for name in ("recent", "purchases", "seen", "bought_or_dismissed"):
            np.testing.assert_allclose(getattr(ctx, name).toarray(), getattr(ref, name).toarray(), err_msg=name)


def test_events_in_several_steps_equal_one_rebuild_and_items_may_arrive_later():
    config = RecoConfig(coview_ttl_s=86_400.0, popularity_half_life_s=86_400.0)
    rows = history(seed=3)
    whole = LiveFeatures(config, 0.0, 1_000)
    whole.rebuild(rows)
    steps = LiveFeatures(config, 0.0, 1_000)
    steps.rebuild(rows[:200])
    steps.model()  # a snapshot in between folds the counts so far into the base matrices
    steps.put_item(RecoItem("new-item", category="x"))
    steps.rebuild(rows[200:])
    a, b = whole.model(), steps.model()
    n = a.n_items
    order = [steps.items.index[i] for i in whole.items.ids]
    np.testing.assert_allclose(a.decayed_popularity, b.decayed_popularity[order])
    np.testing.assert_allclose(a.coview.toarray(), b.coview.toarray()[np.ix_(order, order)], rtol=1e-5)
    assert b.n_items == n + 1


def test_recent_items_expire_on_event_time_and_the_user_cap_holds():
    config = RecoConfig()
    live = LiveFeatures(config, recent_ttl_s=3_600.0, max_users=2)
    live.apply(Interaction("a", "x", "product_view", 1.0, 1_000.0))
    live.apply(Interaction("b", "y", "product_view", 1.0, 1_000.0 + 7_200))  # event time moves on 2 h
    assert live.context(live.users.peek("a")).recent.nnz == 0  # a's view is past the 1 h TTL
    assert live.context(live.users.peek("a")).seen.nnz == 1    # but still seen
    live.apply(Interaction("c", "y", "product_view", 1.0, 9_000.0))
    assert len(live.users) == 2 and live.users.evictions == 1 and "a" not in live.users
