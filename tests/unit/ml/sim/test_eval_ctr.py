"""`python -m app eval ctr`: the bid model against the simulator's hidden truth (eval/ctr.py), on a short run."""

import json

import numpy as np
import pytest

from app.__main__ import main
from eval.ctr import World
from ml import features


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
    text = table(rep)
    for name in ("oracle", "random", "contrail", "HOLDS"):
        assert name in text


@pytest.mark.parametrize("hours", ["0", "-3", "nan", "25", "0.001"])
def test_a_bad_hours_exits_2_with_a_message(hours, capsys):
    assert main(["eval", "ctr", "--hours", hours]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--hours" in err


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
