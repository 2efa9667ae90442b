"""The compact id set against a plain set (its reference): the same answers through adds, removals and merges."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.runtime import idset
from app.runtime.idset import IdSet

IDS = st.sampled_from([f"user-{k}" for k in range(60)])
STEPS = st.lists(st.tuples(st.sampled_from(["add", "discard", "update", "difference_update"]),
                           st.lists(IDS, max_size=4)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(start=st.lists(IDS, max_size=30), steps=STEPS, merge_at=st.integers(1, 8))
def test_an_id_set_answers_as_a_set_does(start, steps, merge_at):
    old = idset.MERGE_AT
    idset.MERGE_AT = merge_at  # merges happen often
    try:
        compact, plain = IdSet(start), set(start)
        for op, items in steps:
            if op in ("add", "discard"):
                for item in items:
                    getattr(compact, op)(item)
                    getattr(plain, op)(item)
            else:
                getattr(compact, op)(items)
                getattr(plain, op)(items)
            assert len(compact) == len(plain)
            assert all((f"user-{k}" in compact) == (f"user-{k}" in plain) for k in range(60))
        parts = [IdSet(start), compact]
        assert all((f"user-{k}" in IdSet.union(parts)) == (f"user-{k}" in plain or f"user-{k}" in start)
                   for k in range(60))
    finally:
        idset.MERGE_AT = old


def test_a_million_ids_take_eight_megabytes():
    ids = IdSet(f"traveller-{k:07d}" for k in range(1_000_000))
    assert len(ids) == 1_000_000 and ids.nbytes == 8_000_000
    assert "traveller-0999999" in ids and "traveller-1000000" not in ids and 42 not in ids


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1) | st.integers(-3, 3), max_size=50))
def test_distinct_is_numpys_unique(values):
    arr = np.array(values, dtype=np.int64)
    assert np.array_equal(idset.distinct(arr), np.unique(arr))
