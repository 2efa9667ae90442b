"""The acceptance model's file and the rules read back from logged features."""

import itertools

import numpy as np
import pytest

from app.retail.ranking import OfferSummary, SearchContext, features, rule_probabilities, rule_probability
from ml.acceptance import DIM, AcceptanceModel, train

CODES = [("Flight",), ("Flight", "Seat", "Bag", "Meal"),
         ("Flight", "Seat", "Bag", "Meal", "Lounge", "FastTrack", "Insurance"), ("Flight", "Lounge", "FastTrack"),
         ("Flight", "Bag")]


def test_rule_probabilities_from_features_are_the_rules():
    for segment, cabin, codes, discount in itertools.product(("premium", "corporate", "economy", "leisure"),
                                                             ("economy", "business"), CODES, (0.0, 12.5, 60.0)):
        ctx = SearchContext("u", False, "", "LIS", "BCN", "2030-01-01", 2, cabin, segment)
        offers = [OfferSummary("a", 30_000, codes, discount), OfferSummary("b", 12_000, ("Flight",), 0.0)]
        x = np.array(features(ctx, offers, 1.8e9))
        assert x.shape == (2, DIM)
        assert rule_probabilities(x) == pytest.approx([rule_probability(ctx, o) for o in offers], abs=1e-12)


def test_a_saved_model_loads_back_and_a_foreign_file_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    x = np.hstack([np.ones((400, 1)), rng.random((400, DIM - 1))])
    model = train(x, (rng.random(400) < 0.3).astype(float), version="acceptance-3")
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        model.save(f)
    back = AcceptanceModel.load(str(path))
    assert back.version == "acceptance-3" and back.trained_on == 400 and np.array_equal(back.weights, model.weights)
    np.savez(tmp_path / "other.npz", weights=np.zeros(DIM - 1), trained_on=1, version="x",
             features=np.array(["bias"] * (DIM - 1)))
    with pytest.raises(ValueError, match="other features"):
        AcceptanceModel.load(str(tmp_path / "other.npz"))
    np.savez(tmp_path / "bid.npz", w1=np.zeros(3))
    with pytest.raises(ValueError, match="not an acceptance model"):
        AcceptanceModel.load(str(tmp_path / "bid.npz"))
