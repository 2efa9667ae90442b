"""eval ranking: the simulated searches, the top-offer choice model, and the report (small and fast)."""

import json

import numpy as np
import pytest

from app.config import RetailConfig
from app.demo import DEMO_ROUTES
from eval import ranking
from ml.sim.population import population
from ml.sim.shopping import Searches, search_segment
from ml.sim.truth import Truth


def test_the_report_has_one_row_per_policy_and_the_oracle_ranks_best():
    report = ranking.evaluate(seed=0, days=0.5, test_searches=1_500)
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["oracle", "rules", "random", "contrail"]
    assert rows["oracle"]["auc"] > rows["contrail"]["auc"] > rows["random"]["auc"]
    assert abs(rows["random"]["auc"] - 0.5) < 4 * rows["random"]["auc_se"]
    assert rows["oracle"]["auc_gap"] == 0 and rows["contrail"]["auc_gap"] > 0
    assert rows["oracle"]["expected_revenue_per_search"] == max(r["expected_revenue_per_search"] for r in rows.values())
    assert rows["contrail"]["revenue_vs_rules"] > 0 and rows["rules"]["revenue_vs_rules"] == 0
    assert report["train"]["paid"] < report["train"]["accepted"] and report["test"]["searches"] == 1_500
    parsed = json.loads(ranking.as_json(report))
    assert {"name", "auc", "log_loss", "revenue_per_search"} <= set(parsed["rows"][0])
    text = ranking.table(report)
    assert all(name in text for name in rows)


@pytest.mark.parametrize("days", [0, -1, 61, float("nan")])
def test_days_out_of_range_are_refused(days):
    with pytest.raises(ranking.BadArgument, match="--days"):
        ranking.evaluate(seed=0, days=days)


def test_labels_follow_the_truth_and_revenue_counts_the_top_offer_only():
    world = population(1)
    truth = Truth(world)
    day = ranking.simulate(world, truth, np.random.default_rng(3), 3_000, 0.0, ranking.DAY, RetailConfig())
    # Paid draws match P_PAY x p_accept (the oracle's probability) within sampling noise.
    assert abs(day.paid.mean() - day.p_true.mean()) < 4 * np.sqrt(day.p_true.mean() / len(day.p_true))
    assert day.paid.sum() < day.accepted.sum() and not np.any(day.paid & ~day.accepted)
    lists = ranking.shown(day, day.p_true, RetailConfig().max_offers)
    assert all(len(ranked) <= 5 and len(set(ranked)) == len(ranked) for ranked in lists)
    top = np.array([ranked[0] for ranked in lists])
    # The oracle's first offer is each search's best expected margin.
    best = [max(range(day.bounds[s], day.bounds[s + 1]), key=lambda i: day.p_true[i] * day.margin[i])
            for s in range(len(day))]
    assert np.array_equal(top, best)
    result = ranking.revenue(day, lists)
    assert result["revenue_per_search"] == pytest.approx(day.margin[top][day.paid[top]].sum() / 100 / len(day))
    assert result["paid_rate"] == pytest.approx(day.paid[top].mean())


def test_searches_are_the_simulators_and_carry_its_segment():
    world = population(2)
    day = ranking.simulate(world, Truth(world), np.random.default_rng(0), 400, 0.0, ranking.DAY, RetailConfig(), 5)
    stream = Searches(world, 2 * 1_000 + 5, len(DEMO_ROUTES))
    assert day.segments == [search_segment(world.travellers[stream.next().traveller]) for _ in range(400)]
    assert set(day.segments) == {"premium", "corporate", "economy", "leisure"}
