"""The swap check scores what serves now itself on the held-out events newer than its training: a candidate of the
same recipe ties the recipe's score by construction, so only this catches a candidate worse than the live model."""

from __future__ import annotations

import numpy as np

from app.reco.training import FRESH_USERS, Incumbent, interactions, train
from ml.reco import strategies as st
from ml.reco.embeddings import train_als
from ml.reco.interactions import ItemMeta, leave_last_out
from state.reco import Interaction

CONFIG = st.RecoConfig(factors=16)


def _history(users: int = 120, items: int = 60, per: int = 8) -> tuple[list[Interaction], dict[str, int], int]:
    """Each user views `per` random items; the k-th views of all users come together, a batch every 2,000 s."""
    rng = np.random.default_rng(3)
    rows = [Interaction(f"u{u}", f"i{i}", "product_view", 1.0, 1000.0 + u * 10 + k * 2000)
            for u in range(users) for k, i in enumerate(rng.permutation(items)[:per])]
    return rows, {f"i{i}": i for i in range(items)}, items


def _leaked() -> tuple[list[Interaction], dict[str, int], int, object, np.ndarray]:
    """A serving model whose embeddings saw every event, the held-out ones too: on those it does better than any
    honest candidate, as a live model does when a new training goes wrong."""
    rows, index, n = _history()
    inter = interactions(rows, index, n)
    embeddings = train_als(inter.matrix(), CONFIG.factors, CONFIG.als_regularization, CONFIG.als_alpha,
                           CONFIG.als_iterations, CONFIG.seed, 1)
    return rows, index, n, embeddings, leave_last_out(inter).held_at


def test_a_candidate_worse_than_the_live_model_on_newer_events_is_kept_out():
    rows, index, n, embeddings, held_at = _leaked()
    # learned weights: its recipe is the candidate's, so the recipe's score ties
    unknown = train(rows, index, n, ItemMeta(), CONFIG, Incumbent(embeddings, st.SEED_WEIGHTS, True), 50)
    assert unknown.live and unknown.candidate == unknown.incumbent  # its training time unknown: nothing to catch it

    through = float(held_at.min()) - 1.0  # trained before every held-out event (it claims)
    kept = train(rows, index, n, ItemMeta(), CONFIG, Incumbent(embeddings, st.SEED_WEIGHTS, True, through), 50)
    assert not kept.live
    assert kept.reason == ("the candidate did worse than the model serving now on the 120 held-out events newer "
                           "than that model's training")
    assert kept.users_evaluated == 120 and kept.candidate < kept.incumbent


def test_too_few_newer_events_fall_back_to_the_recipe_and_a_live_model_knows_its_newest_event():
    rows, index, n, embeddings, held_at = _leaked()
    through = float(np.sort(held_at)[-(FRESH_USERS - 1)]) - 1e-6  # only FRESH_USERS - 1 held-out events are newer
    outcome = train(rows, index, n, ItemMeta(), CONFIG, Incumbent(embeddings, st.SEED_WEIGHTS, True, through), 50)
    assert outcome.live and outcome.reason == "evaluated as good as or better than the model serving now"
    assert outcome.users_evaluated == 120 and outcome.data_through == max(r.at for r in rows)
