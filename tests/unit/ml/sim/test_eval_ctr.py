"""`python -m app eval ctr`: the bid model against the simulator's hidden truth (eval/ctr.py), on a short run."""

import json
import math

import numpy as np
import pytest

from app.__main__ import main
from eval.ctr import MAX_CPM, World, spend_budget, winnable
from ml import features
from ml.sim import exchange

ECONOMIC_KEYS = {"spend_usd", "wins", "avg_cpm", "click_value_usd", "budget_met", "clicks", "conversions",
                 "expected_clicks", "expected_conversions", "clicks_per_usd", "conversions_per_usd",
                 "expected_clicks_per_usd", "expected_conversions_per_usd"}


@pytest.fixture(scope="module")
def report():
    """One short run through the command (half a simulated hour of training traffic), its --json output."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval", "ctr", "--seed", "0", "--hours", "0.5", "--json"])
    assert code == 0
    return json.loads(out.getvalue())


def test_json_has_the_oracle_random_and_contrail_rows(report):
    assert [r["name"] for r in report["rows"]] == ["oracle", "random", "contrail"]
    for row in report["rows"]:
        assert {"auc", "auc_se", "log_loss", "ece", "mean_ctr", "auc_gap"} <= row.keys()
        assert 0.0 < row["log_loss"] < 1.0 and 0.0 <= row["ece"] < 0.05
    assert report["rows"][0]["auc_gap"] == 0.0
    assert report["train"]["rows"] == 36_000 and report["test"]["from_hour"] == 0.5
    assert set(report["goal"]) >= {"oracle_nontrivial", "contrail_within", "holds"}


def test_the_truth_is_not_trivial_and_training_beats_the_random_model(report):
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["oracle"]["auc"] >= 0.70
    assert rows["contrail"]["auc"] > rows["random"]["auc"] + 0.05
    assert rows["contrail"]["log_loss"] < rows["random"]["log_loss"]
    assert rows["oracle"]["auc"] >= rows["contrail"]["auc"]


def test_the_table_names_the_rows_and_the_goal(capsys):
    from eval.ctr import table

    rep = {"seed": 0, "hours": 1.0, "rate": 20.0,
           "train": {"rows": 72_000, "clicks": 600, "epochs": 9, "best_epoch": 6},
           "test": {"rows": 1000, "clicks": 10, "rate": 0.01, "from_hour": 1.0, "to_hour": 25.0},
           "rows": [{"name": n, "auc": a, "auc_se": 0.01, "log_loss": 0.05, "ece": 0.001, "mean_ctr": 0.01,
                     "auc_gap": 0.76 - a} for n, a in (("oracle", 0.76), ("random", 0.53), ("contrail", 0.75))],
           "goal": {"oracle_auc_at_least": 0.7, "max_gap": 0.02, "oracle_nontrivial": True, "contrail_within": True,
                    "holds": True},
           "seconds": {"data": 1.0, "train": 1.0, "total": 2.0}}
    rep["economics"] = {"budget_usd": 100.0, "budget_share": 0.1, "cost_all_usd": 1000.0, "winnable": 990,
                        "max_cpm": 20.0, "clicks": 10, "conversions": 1,
                        "flat_expected_clicks_per_usd": 1.5}
    for r, met in zip(rep["rows"], (True, True, False), strict=True):
        r.update(spend_usd=100.0 if met else 40.0, wins=300, avg_cpm=3.3, click_value_usd=0.3 if met else math.inf,
                 budget_met=met, clicks=3, conversions=0, expected_clicks=3.1, expected_conversions=0.1,
                 clicks_per_usd=0.03, conversions_per_usd=0.0, expected_clicks_per_usd=0.031,
                 expected_conversions_per_usd=0.001)
    text = table(rep)
    for name in ("oracle", "random", "contrail", "HOLDS", "economics at the same budget: $100.00", "clicks/$"):
        assert name in text
    assert "budget not reached by contrail" in text


@pytest.mark.parametrize("hours", ["0", "-3", "nan", "25", "0.001"])
def test_a_bad_hours_exits_2_with_a_message(hours, capsys):
    assert main(["eval", "ctr", "--hours", hours]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--hours" in err


@pytest.mark.parametrize("share", ["0", "-0.1", "nan", "1.5"])
def test_a_bad_budget_share_exits_2_with_a_message(share, capsys):
    assert main(["eval", "ctr", "--budget-share", share]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--budget-share" in err


def test_every_row_spends_the_same_budget(report):
    econ = report["economics"]
    budget = econ["budget_usd"]
    assert budget == pytest.approx(0.1 * econ["cost_all_usd"], rel=1e-5) and budget > 50
    for row in report["rows"]:
        assert ECONOMIC_KEYS <= row.keys()
        assert row["budget_met"] is True
        # Below the budget by less than one impression's price at the cap.
        assert budget - MAX_CPM / 1000 <= row["spend_usd"] <= budget + 1e-6
        assert row["spend_usd"] == pytest.approx(budget, rel=1e-3)
        assert row["clicks_per_usd"] == pytest.approx(row["clicks"] / row["spend_usd"], rel=1e-4)
        assert row["wins"] > 1000 and 0 <= row["conversions"] <= row["clicks"]
    spends = [r["spend_usd"] for r in report["rows"]]
    assert max(spends) - min(spends) <= MAX_CPM / 1000


def test_the_oracle_and_the_trained_model_buy_more_clicks_per_dollar_than_random(report):
    rows = {r["name"]: r for r in report["rows"]}
    oracle, random, contrail = (rows[n]["expected_clicks_per_usd"] for n in ("oracle", "random", "contrail"))
    assert oracle >= random and oracle >= contrail
    assert contrail > 1.3 * random
    # The observed clicks (one draw per impression, shared by the rows) agree.
    assert rows["contrail"]["clicks_per_usd"] > rows["random"]["clicks_per_usd"]


def _market(n=5000, seed=11):
    rng = np.random.default_rng(seed)
    floor, competing = exchange.draw_prices(rng, rng.uniform(0.1, 1.0, n))
    return rng.uniform(0.002, 0.05, n), floor, competing


def test_the_budget_buys_the_best_value_impressions_and_no_more():
    ctr, floor, competing = _market()
    cost = np.maximum(competing, floor) / 1000
    budget = 0.2 * cost[winnable(floor, competing)].sum()
    sp = spend_budget(ctr, floor, competing, budget)
    assert sp.budget_met and math.isfinite(sp.k)
    assert budget - MAX_CPM / 1000 < sp.spend_usd <= budget
    # Won exactly where k x CTR (capped) beats the price and the floor; paid the second price, never the bid.
    bid = np.minimum(MAX_CPM, sp.k * ctr)
    assert np.array_equal(sp.won, (bid > competing) & (bid >= floor))
    assert np.allclose(sp.price[sp.won], np.maximum(competing, floor)[sp.won], atol=1e-4)
    assert np.all(sp.price[sp.won] <= bid[sp.won]) and np.all(sp.price[~sp.won] == 0)
    # Maximal: the cheapest impression left at the next k would not fit.
    left = winnable(floor, competing) & ~sp.won
    nxt = np.flatnonzero(left)[np.argmin((np.maximum(competing, floor) / ctr)[left])]
    assert sp.spend_usd + cost[nxt] > budget
    # The same budget with the true CTR scrambled buys fewer expected clicks.
    shuffled = spend_budget(np.random.default_rng(1).permutation(ctr), floor, competing, budget)
    assert shuffled.spend_usd == pytest.approx(budget, abs=MAX_CPM / 1000)
    assert ctr[shuffled.won].sum() < 0.9 * ctr[sp.won].sum()


def test_a_budget_no_policy_can_spend_bids_the_cap_everywhere_and_says_so():
    ctr, floor, competing = _market()
    competing[:10] = MAX_CPM + 1.0          # no bid under the cap wins these; all the others can be won
    competing[10:] = np.minimum(competing[10:], MAX_CPM - 1.0)
    ctr[10:20] = 0.0                        # a model that predicts no click never bids
    can = winnable(floor, competing)
    assert not can[:10].any() and can[10:].all()
    price = exchange.clearing_price(np.maximum(competing, floor), competing, floor) / 1000
    sp = spend_budget(ctr, floor, competing, 2 * price[can].sum())
    assert not sp.budget_met and sp.k == math.inf
    assert np.array_equal(sp.won, can & (ctr > 0))
    assert sp.spend_usd == pytest.approx(price[20:].sum()) and sp.spend_usd < price[can].sum()
    # A budget below the cheapest impression buys nothing.
    none = spend_budget(ctr, floor, competing, 1e-6)
    assert none.budget_met and none.spend_usd == 0.0 and not none.won.any()


def test_the_exchange_draws_are_the_simulators():
    rng = np.random.default_rng(3)
    site_floors = np.full(20_000, 0.5)
    floor, competing = exchange.draw_prices(rng, site_floors)
    assert np.median(competing) == pytest.approx(exchange.COMPETITION_MEDIAN_CPM, rel=0.03)
    assert floor.min() >= 0.4 and floor.max() <= 0.6 and np.all(floor == np.round(floor, 2))
    assert float(exchange.clearing_price(5.0, 3.21234, 0.5)) == 3.2123
    assert float(exchange.clearing_price(3.0, 3.5, 4.0)) == 3.0   # never above the bid


def test_rows_are_the_servers_rows():
    """The vectorised rows equal user_block per impression from the profile the simulator writes, with one
    candidate's columns (position 0, no frequency cap)."""
    world = World(3)
    imps = world.impressions(np.random.default_rng(7), np.arange(200, dtype=np.float64) * 97.0)
    pop = world.population
    for i in range(0, 200, 13):
        t = pop.travellers[int(imps["traveller"][i])]
        body = t.profile(1_800_000_000.0)
        now = 1_800_000_000.0 + imps["at"][i]
        recency = 1.0 / (1.0 + max(0.0, now - body["last_seen"]) / 86_400)
        row = features.user_block(np.asarray(body["interests"], dtype=np.float32), body["segments"],
                                  np.asarray(body["loyalty"], dtype=np.float32), recency, int(imps["device"][i]))
        full = features.candidate_matrix(row, features.candidate_columns(None, np.zeros(1, dtype=np.float32)))[0]
        assert np.array_equal(imps["x"][i], full)
        assert imps["p"][i] == pytest.approx(world.truth.p_click(t, int(imps["device"][i]), recency))
