"""The evaluation protocol on hand-made data whose answers are worked out by hand."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from ml.reco.interactions import Interactions, leave_last_out
from ml.reco.protocol import Task, full_ranks, hit_rate, ndcg, sample_negatives, sampled_ranks


def _inter(rows, n_users, n_items):
    u, i, t = zip(*rows, strict=True)
    return Interactions.build(np.array(u), np.array(i), np.array(t, dtype=float), n_users, n_items)


def test_leave_last_out_holds_out_the_latest_event_and_breaks_time_ties_by_input_order():
    inter = _inter([(0, 3, 30.0), (0, 1, 10.0), (0, 2, 20.0),   # user 0: latest is item 3
                    (1, 4, 5.0), (1, 5, 5.0),                   # user 1: tie, the later line (item 5) is last
                    (2, 6, 1.0),                                # user 2: one event, nothing to train on
                    (3, 7, 1.0), (3, 7, 2.0)], 4, 8)            # user 3: held-out item seen before
    split = leave_last_out(inter)
    assert split.users.tolist() == [0, 1]
    assert split.held_out.tolist() == [3, 5]
    assert split.skipped == 2
    train_items = {(int(u), int(i)) for u, i in zip(split.train.user, split.train.item, strict=True)}
    assert train_items == {(0, 1), (0, 2), (1, 4), (3, 7)}


def test_full_ranking_skips_seen_items_and_counts_ties_against_the_held_out_item():
    # 6 items. User A saw item 0; held-out item 2. Scores: 5 4 3 3 1 9 -> unseen items scoring >= 3,
    # other than item 2 itself: item 1 (4), item 3 (3, a tie), item 5 (9) -> rank 3.
    # User B saw items 1 and 2; held-out item 4 scores highest among unseen -> rank 0.
    scores = np.array([[5, 4, 3, 3, 1, 9], [0, 9, 9, 1, 2, 0]], dtype=float)
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0]]))
    ranks = full_ranks(scores, seen, np.array([2, 4]))
    assert ranks.tolist() == [3, 0]
    assert hit_rate(ranks, k=3) == 0.5  # rank 3 is the 4th place: outside the top 3
    assert hit_rate(ranks, k=10) == 1.0
    assert ndcg(ranks, k=10) == pytest.approx((1 / math.log2(5) + 1 / math.log2(2)) / 2)
    assert ndcg(ranks, k=3) == pytest.approx(0.5)


def test_a_model_that_scores_everything_alike_gets_the_last_place():
    seen = sp.csr_matrix((1, 5))
    assert full_ranks(np.zeros((1, 5)), seen, np.array([0])).tolist() == [4]
    assert full_ranks(np.full((1, 5), -np.inf), seen, np.array([0])).tolist() == [4]


def test_sampled_ranks_count_negatives_scoring_at_least_as_high():
    scores = np.array([[0.1, 0.5, 0.3, 0.9, 0.5]])
    assert sampled_ranks(scores, np.array([1]), np.array([[0, 2, 4]])).tolist() == [1]  # item 4 ties


def test_negatives_are_seeded_unseen_and_distinct():
    seen = sp.csr_matrix(np.eye(3, 200))
    held = np.array([10, 11, 12])
    a = sample_negatives(seen, held, 99, seed=7)
    assert np.array_equal(a, sample_negatives(seen, held, 99, seed=7))
    assert not np.array_equal(a, sample_negatives(seen, held, 99, seed=8))
    for r in range(3):
        assert len(set(a[r].tolist())) == 99
        assert r not in a[r] and held[r] not in a[r]


def test_task_evaluates_a_scorer_by_blocks_with_hand_computed_metrics():
    # 3 users, 12 items. Train: user u saw item u. Held-out: 3, 4, 5. The scorer scores items by index
    # descending (11 best), so among each user's 11 unseen items the held-out item j ranks 11 - j - 1 ... :
    # user 0 (seen 0): items 11..4 beat item 3 -> rank 8; user 1 -> rank 7; user 2 -> rank 6.
    train = sp.csr_matrix((np.ones(3), ([0, 1, 2], [0, 1, 2])), shape=(3, 12))
    task = Task.build(train, np.array([0, 1, 2]), np.array([3, 4, 5]), seed=0)
    assert task.negatives.shape == (3, 10)  # 12 items - 1 seen - 1 held out: fewer than 99 to sample
    full, _ = task.ranks(lambda users: np.tile(np.arange(12.0), (len(users), 1)))
    assert full.tolist() == [8, 7, 6]
    result = task.evaluate(lambda users: np.tile(np.arange(12.0), (len(users), 1)), k=8)
    assert result.hr == pytest.approx(2 / 3)
    assert result.ndcg == pytest.approx((1 / math.log2(9) + 1 / math.log2(8)) / 3)
    assert result.hr_sampled == pytest.approx(2 / 3)  # the negatives are every unseen item: same as full
