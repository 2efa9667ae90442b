"""`python -m app eval bandit`: the vectorised simulation against the plain policies, and the Open Bandit Dataset
reader and estimators on small CSVs written here in the dataset's layout (never the real data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.__main__ import main
from eval.bandit import (
    CLICK,
    IGNORED,
    _later_of_same,
    _learned_in_order,
    evaluate_obd,
    load_obd,
    make_problems,
    replay,
    run_simulation,
    simulate,
    simulate_reference,
)
from ml.bandit import make_policy, successes

HEADER = (",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,user_feature_2,"
          "user_feature_3," + ",".join(f"user-item_affinity_{i}" for i in range(5)))


def _obd(path: Path, rounds: int = 800, items: int = 5, seed: int = 0, start: int = 0) -> Path:
    """A uniform-random log in the Open Bandit Dataset's layout; item `items - 1` is clicked 30% of the time."""
    rng = np.random.default_rng(seed)
    lines = [HEADER]
    for i in range(rounds):
        item = int(rng.integers(items))
        click = int(rng.random() < (0.3 if item == items - 1 else 0.02))
        s = start + i
        lines.append(f"{i},2019-11-24 {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000000+00:00,{item},"
                     f"{1 + i % 3},{click},{1 / items},81ce,03a5,c2e4,f975," + ",".join(["0.0"] * 5))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind,params", [
    ("thompson", {}), ("thompson", {"gamma": 0.999, "gamma_floor": 0.0}),
    ("thompson", {"fit_arms": 0.0}), ("thompson", {"fit_arms": 2.0}), ("thompson", {"fit_arms": 8.0}),
    ("thompson", {"optimistic": True}), ("thompson", {"fit_arms": 2.0, "optimistic": True}),
    ("thompson", {"fit_arms": 2.0, "gamma": 0.999, "gamma_floor": 0.0}), ("thompson", {"arm_memory": 0.0}),
    ("thompson", {"fit_arms": 0.0, "optimistic": False, "arm_memory": 0.0}),  # the discount table's settings
    ("thompson", {"arm_memory": 40.0}), ("thompson", {"arm_memory": 40.0, "gamma": 0.999, "gamma_floor": 0.0}),
    ("thompson", {"gamma": 0.99, "gamma_floor": 30.0}), ("thompson", {"gamma": 0.995, "gamma_floor": 20.0,
                                                                      "arm_memory": 40.0}),
    ("epsilon_greedy", {}), ("ucb1", {}), ("uniform", {})])
def test_vectorised_simulation_is_the_plain_policy_draw_for_draw(kind, params):
    """Exact agreement (the same floats) for one problem: Thompson's pooled and fitted priors, optimistic draws,
    success counts, discount and per-arm memory included."""
    problems = make_problems(1, first=5, k_range=(12, 12))
    fast = simulate(kind, problems, (700, 2500), 7, 9, **params)
    assert fast[0, 1] == simulate_reference(kind, problems, 2500, 7, 9, **params)
    assert fast[0, 0] == simulate_reference(kind, problems, 700, 7, 9, **params)


def test_the_off_policy_fits_decay_each_observation_once_per_later_update_of_its_item():
    """IPW and DR fit the posterior in one pass: each observation weighted by the per-arm memory once per later
    observation of the same item, which is what updating the policy in time order leaves."""
    rng = np.random.default_rng(3)
    arms = rng.integers(0, 5, 300)
    later = _later_of_same(arms, 5)
    assert _later_of_same(np.array([0, 1, 0, 0, 1]), 2).tolist() == [2, 1, 1, 0, 0]
    values = rng.random(300)
    keep = 1 - 1 / 40
    sequential = np.zeros(5)
    for a, v in zip(arms, values, strict=True):
        sequential[a] = sequential[a] * keep + v
    assert np.allclose(np.bincount(arms, weights=values * keep ** later, minlength=5), sequential)


def test_the_off_policy_fit_with_a_floored_discount_is_the_plain_policy_learning_in_order():
    """The floored discount has no one-pass form: IPW and DR then learn the training half in time order, as the
    policy does (the same floats)."""
    rng = np.random.default_rng(4)
    arms_k = np.array([2, 3, 4])
    arm = rng.choice(arms_k, 400)
    click = rng.random(400) < 0.1
    ds, df = successes(np.where(click, CLICK, IGNORED))
    succ, fail = _learned_in_order(arm, ds, df, arms_k, 0.99, 30.0, 50.0)
    policy = make_policy("thompson", arms=["x2", "x3", "x4"], gamma=0.99, gamma_floor=30.0, arm_memory=50.0)
    for a, c in zip(arm, click, strict=True):
        policy.update(f"x{a}", CLICK if c else IGNORED)
    s = policy._stats[""]
    assert succ.tolist() == s[3].tolist() and fail.tolist() == s[4].tolist()
    assert 3 * 30 <= succ.sum() + fail.sum() < 3 * 31 + 1  # the floor binds: each arm near 30 trials, not 133


@pytest.mark.parametrize("arm_memory", [0.0, 20.0])
def test_replay_is_the_plain_policy_learning_from_the_rounds_it_matches(tmp_path, arm_memory):
    log = load_obd(_obd(tmp_path / "log.csv", rounds=600))
    clicks, matched = replay(log, np.arange(len(log.arm))[None, :], 5, arm_memory=arm_memory)
    policy, rng = make_policy("thompson", arms=log.arms, arm_memory=arm_memory), np.random.default_rng(5)
    expected_clicks = expected_matched = 0.0
    for i in range(len(log.arm)):
        if policy.choose("", rng) == log.arms[log.arm[i]]:
            policy.update(log.arms[log.arm[i]], CLICK if log.click[i] else IGNORED)
            expected_clicks += log.click[i]
            expected_matched += 1
    assert (clicks[0], matched[0]) == (expected_clicks, expected_matched) and expected_matched > 50


def test_padded_simulation_agrees_in_distribution():
    """Several problems of different widths at once (padded arrays): the mean regret matches the plain policy's."""
    problems = make_problems(24, k_range=(10, 20))
    fast = simulate("thompson", problems, (600,), 1, 2)[:, 0]
    one = [make_problems(1, first=s, k_range=(10, 20)) for s in range(24)]
    slow = np.asarray([simulate_reference("thompson", p, 600, (3, s), (4, s)) for s, p in enumerate(one)])
    diff = fast.mean() - slow.mean()
    se = np.sqrt(fast.var(ddof=1) / 24 + slow.var(ddof=1) / 24)
    assert abs(diff) < 4 * se + 1e-9


def test_the_process_pool_gives_the_same_numbers():
    from concurrent.futures import ProcessPoolExecutor

    serial = run_simulation(seeds=3, horizons=(300,), k_range=(10, 12))
    with ProcessPoolExecutor(max_workers=2) as pool:
        assert run_simulation(seeds=3, horizons=(300,), k_range=(10, 12), pool=pool) == serial


def test_regret_ordering_on_a_quick_configuration():
    report = run_simulation(seeds=8, horizons=(1000, 6000), k_range=(10, 10))
    r = {k: v["6000"]["mean"] for k, v in report["regret"].items()}
    assert r["thompson"] < r["uniform"] and r["epsilon_greedy"] < r["uniform"] and r["thompson"] < r["ucb1"]
    assert report["regret"]["uniform"]["1000"]["mean"] < r["uniform"]
    assert set(report["goal"]) >= {"lowest", "half_of_epsilon_greedy"}


def test_obd_reader_file_and_directory(tmp_path):
    log = load_obd(_obd(tmp_path / "all.csv", rounds=30))
    assert len(log.arm) == 30 and log.campaigns == [""] and len(log.arms) <= 5
    assert np.all(log.propensity == 0.2)
    # a directory without random/all/all.csv: every log under it, each file its own campaign, in time order
    _obd(tmp_path / "d" / "men" / "men.csv", rounds=20, items=3, seed=1, start=5)
    _obd(tmp_path / "d" / "women" / "women.csv", rounds=20, items=4, seed=2)
    (tmp_path / "d" / "men" / "item_context.csv").write_text(",item_id,item_feature_0\n0,0,1.0\n")
    both = load_obd(tmp_path / "d")
    assert both.campaigns == ["men", "women"] and len(both.arm) == 40
    assert all(a.startswith(("men:", "women:")) for a in both.arms)
    # the preferred file when the directory is the dataset's root
    _obd(tmp_path / "d" / "random" / "all" / "all.csv", rounds=10)
    assert load_obd(tmp_path / "d").files[0].endswith("all.csv")


def test_obd_estimates_find_the_better_item(tmp_path):
    report = evaluate_obd(_obd(tmp_path / "all.csv", rounds=3000), boot=30, replay_runs=4, draws=300)
    logged = report["logged"]["estimate"]
    assert report["uniform_logging"] and report["rounds"] == 3000
    for key in ("replay", "ipw", "dr"):
        e = report[key]
        assert e["lower"] <= e["estimate"] <= e["upper"] or key == "replay"
        assert e["estimate"] > 1.5 * logged  # one item is clicked 15 times as often as the others


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["eval", "bandit", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_and_table(tmp_path, capsys):
    path = _obd(tmp_path / "all.csv", rounds=300)
    code, out, _ = _run(capsys, "--seeds", "3", "--rounds", "200,500", "--data", str(path), "--json")
    assert code == 0
    doc = json.loads(out)
    names = [(r["name"], r["estimator"]) for r in doc["rows"]]
    assert names == [("uniform", "simulation"), ("epsilon_greedy (0.1)", "simulation"), ("ucb1", "simulation"),
                     ("contrail", "simulation"), ("random (logged)", "logged"), ("contrail", "replay"),
                     ("contrail", "ipw"), ("contrail", "dr")]
    for r in doc["rows"]:
        assert {"name", "regret", "ctr_estimate", "ratio_to_random"} <= set(r)
        assert (r["regret"] is None) == (r["ctr_estimate"] is not None or r["name"].startswith("random"))
    assert doc["simulation"]["horizons"] == [200, 500]
    code, out, _ = _run(capsys, "--seeds", "2", "--rounds", "300")
    assert code == 0 and "contrail" in out and "regret @ 300" in out and "Open Bandit" not in out


@pytest.mark.parametrize("content,message", [
    (",timestamp,item_id,click\n0,2019,1,0\n", "missing column(s) position, propensity_score"),
    (HEADER + "\n0,2019-11-24,x,1,0,0.2,a,b,c,d,0,0,0,0,0\n", "line 2: expected numeric"),
    (HEADER + "\n", "no logged rounds"),
])
def test_a_bad_file_is_one_error_line_and_exit_code_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    code, out, err = _run(capsys, "--seeds", "2", "--rounds", "100", "--data", str(path))
    assert code == 2 and out == ""
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_a_missing_file_and_bad_options_are_exit_code_2(tmp_path, capsys):
    code, out, err = _run(capsys, "--data", str(tmp_path / "nope.csv"))
    assert code == 2 and out == "" and "no such file or directory" in err
    assert _run(capsys, "--rounds", "ten")[0] == 2
    assert _run(capsys, "--seeds", "1", "--rounds", "100")[0] == 2
    code, _, err = _run(capsys, "--seeds", "2", "--rounds", "100,1000000000000")  # refused, not run for days
    assert code == 2 and "--rounds numbers of rounds from 1 to 10,000,000" in err
