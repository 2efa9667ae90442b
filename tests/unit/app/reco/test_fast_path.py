"""The compiled path of one user's personalized and cf lists gives the plain path's lists.

Their sums run in different orders, so scores may differ in the last bits: scores are compared to 1e-9 and lists
item by item, items whose scores round to the same value (ties, to the six decimals served) as a set.
"""

from itertools import groupby
from types import SimpleNamespace

import numpy as np
import pytest

from app.reco.service import RecoService
from ml.reco import strategies as st
from ml.reco.embeddings import Embeddings
from state.reco import Interaction, RecoItem

KINDS = [("product_view", 1.0), ("click", 3.0), ("cart_add", 5.0), ("purchase", 10.0), ("dismiss", -5.0)]
CATEGORIES = ["beach", "city", "ski"]


class _Metrics:
    def __getattr__(self, name):
        return self

    def labels(self, *args):
        return self

    def inc(self, *args):
        pass

    def observe(self, *args):
        pass


def service(recent_ttl_s: float, users: int, items: int, events: int, seed: int, embeddings: bool) -> RecoService:
    config = SimpleNamespace(weight_view=1.0, weight_click=3.0, weight_wishlist=3.0, weight_cart=5.0,
                             weight_purchase=10.0, weight_dismiss=-5.0, recent_n=50, recent_ttl_s=recent_ttl_s,
                             popularity_half_life_s=3 * 86_400.0, trending_window_s=2 * 86_400.0, coview_window=10,
                             coview_ttl_s=86_400.0, max_users=10_000, cache_ttl_s=0.0, cache_entries=10,
                             cache_bytes=1 << 20, explore_items=1, max_n=100, factors=8)
    svc = RecoService(config, None, None, _Metrics(), None)  # type: ignore[arg-type]  # no store: features only
    for i in range(items):
        svc.features.put_item(RecoItem(f"i{i}", category=CATEGORIES[i % 3], hidden=i == 7))
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 4 * 86_400, events)) + 1_700_000_000
    rows = []
    for t in times:
        kind, weight = KINDS[rng.choice(len(KINDS), p=[0.5, 0.2, 0.1, 0.1, 0.1])]
        item = int(min(rng.geometric(0.15), items) - 1)  # skewed: many repeats of the same items per user
        rows.append(Interaction(f"u{rng.integers(users)}", f"i{item}", kind, weight, float(t)))
    svc.features.rebuild(rows)
    if embeddings:
        factors = rng.normal(size=(items, 8)).astype(np.float32)
        unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
        svc.features.set_embeddings(Embeddings("als", np.zeros((1, 8), np.float32), factors, unit), "als-1")
    return svc


@pytest.mark.parametrize("recent_ttl_s, embeddings, seed", [(0.0, True, 1), (86_400.0, True, 2), (0.0, False, 3),
                                                            (3_600.0, False, 4)])
def test_fast_lists_equal_the_plain_lists(recent_ttl_s, embeddings, seed):
    svc = service(recent_ttl_s, users=60, items=40, events=3_000, seed=seed, embeddings=embeddings)
    f = svc.features
    model = f.model()
    queries = [("personalized", 10, None, None), ("cf", 10, None, None), ("personalized", 5, ["beach"], ["seen"]),
               ("cf", 20, ["city", "ski"], ["i1", "i2"]), ("personalized", 1, None, None),
               ("personalized", 40, None, None)]
    for u in range(60):
        state = f.users.get(f"u{u}")
        if state is None:
            continue
        indices, weights = f.recent_row(state)
        plain = f.context(state).recent
        assert np.array_equal(indices, plain.indices) and np.allclose(weights, plain.data, rtol=1e-12, atol=0)
        ctx = f.context(state)
        assert np.allclose(svc._fast_scores("personalized", model, (indices, weights)),
                           st.personalized(model, ctx, svc.weights), rtol=1e-9, atol=1e-9)
        assert np.array_equal(svc._fast_scores("cf", model, (indices, weights)), st.cf(model, ctx)[0])
        for strategy, n, categories, exclude in queries:
            svc.fast = True
            fast = svc._recommend(f"u{u}", state, strategy, n, categories, exclude)
            svc.fast = False
            assert_same_answer(fast, svc._recommend(f"u{u}", state, strategy, n, categories, exclude))


def assert_same_answer(fast: dict, plain: dict) -> None:
    assert {k: v for k, v in fast.items() if k != "items"} == {k: v for k, v in plain.items() if k != "items"}

    def groups(answer):
        return [(score, sorted((i["item_id"], i["reason"]) for i in tied))
                for score, tied in groupby(answer["items"], key=lambda i: i["score"])]
    assert groups(fast) == groups(plain)
    assert len(fast["items"]) == len(plain["items"])


def test_fast_path_after_new_events_and_a_new_snapshot():
    svc = service(0.0, users=20, items=30, events=500, seed=5, embeddings=True)
    f = svc.features
    for round_ in range(3):
        state = f.users.get("u3")
        answers = []
        for fast in (True, False):
            svc.fast = fast
            answers.append(svc._recommend("u3", state, "personalized", 10, None, None))
        assert_same_answer(*answers)
        f.apply(Interaction("u3", f"i{round_ + 10}", "click", 3.0, f.now + 60))
