"""The compiled top-n gives the plain top-n's list: best first, ties by lower index, masked and -inf items out."""

import numpy as np
import pytest

from ml.reco import kernels
from ml.reco.ranking import top_n


@pytest.mark.parametrize("seed", range(20))
def test_top_n_equals_the_plain_top_n(seed):
    rng = np.random.default_rng(seed)
    items = int(rng.integers(1, 80))
    scores = rng.integers(0, 6, items).astype(np.float64)  # few values: many ties, also at the n-th place
    scores[rng.random(items) < 0.1] = -np.inf
    allowed = rng.random(items) < 0.8
    n = int(rng.integers(1, items + 3))
    picked, values = kernels.top_n(scores, allowed, n)
    masked = np.where(allowed, scores, -np.inf)
    expected, expected_values = top_n(masked, n)
    keep = expected[0] >= 0
    assert picked.tolist() == expected[0][keep].tolist()
    assert values.tolist() == expected_values[0][keep].tolist()
    assert all(allowed[picked]) and np.isfinite(values).all()
