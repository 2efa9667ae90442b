"""`python -m app eval ctr [--seed N] [--hours H] [--json]`: the bid model against the simulator's hidden truth.

Offline, no server. For the population and hidden truth of `--seed` (ml/sim/):

1. Traffic. `--hours` simulated hours of impressions at the simulator's default rate (20 requests a second,
   72,000 impressions an hour), drawn with the sampler the simulator driver uses
   (`Population.sample_impressions`: traveller by activity, site by popularity, device 80 % the traveller's
   own), evenly spaced in time from the start of the run.
2. Features, as the server builds them: each traveller's profile is the one the simulator writes at the start
   (`Traveller.profile(start)`: interests, segments, loyalty, last seen), stored as the bidder's float32
   arrays; the user block is `ml.features.user_block(interests, segments, loyalty, recency, devicetype)` with
   the server's recency `1 / (1 + (now - last_seen) / 1 day)` at the impression's time; the candidate columns
   are those of one candidate (`ml.features.candidate_columns(None, [0.0])`: no frequency cap used, first
   position).
3. Clicks drawn from the truth (`Truth.p_click_features`, the driver's `p_click`) for every impression: the
   evaluation assumes each impression was won and shown, so the model learns from all of them.
4. Training: `ml.training.bidnet.train` from `make_default()`, time-ordered (its own split: the newest 20 % of
   the rows are its holdout, the 10 % before them early-stop and calibrate), seeded by `--seed`, with
   TRAIN_L1 and TRAIN_EPOCHS (l1 0.1 instead of 0.5, up to 60 epochs; early stopping still decides).
5. Test: a fresh held-out day, the 24 hours after the training window: TEST_ROWS new impressions at uniform
   times in that day, from a separate stream, with their own clicks. Rows: `oracle` (the true CTR as the
   score), `random` (`make_default()`'s predicted CTR, the shipped starting model) and `contrail` (the trained
   net's predicted CTR, as the server computes it): AUC (with its Hanley-McNeil standard error), log-loss,
   ECE (10 equal-count bins) and the AUC gap to the oracle.

Goal (issue 22): the oracle's AUC at least 0.70 (the truth is not trivial) and contrail's AUC within 0.02 of it.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np

from ml import features
from ml.model import make_default
from ml.sim.population import Population, population
from ml.sim.truth import Truth
from ml.training import bidnet, metrics

RATE = 20.0                 # impressions a second: `python -m app simulate`'s default --rate
HOURS = 12.0                # the default training window (see docs/learning.md, "Proof against the truth")
# The trainer as shipped, but with a lighter L1 step: bidnet.train applies lr·l1 per minibatch, so over
# hours of traffic its default (0.5) strips weight from features that carry signal (gap 0.02-0.05 to the
# oracle at 6-12 hours, best epoch 1-2); 0.1 keeps it (docs/learning.md).
TRAIN_L1, TRAIN_EPOCHS = 0.1, 60
TEST_ROWS = 200_000         # impressions of the held-out day
START = 1_800_000_000.0     # the run's start (epoch seconds): profiles are written then
DAY = 86_400.0
MAX_HOURS = 24.0            # memory: 72,000 rows of 1 KiB an hour
GOAL_ORACLE_AUC = 0.70
GOAL_GAP = 0.02


class BadArgument(ValueError):
    """An argument out of range (the command exits 2 with its message)."""


def _profile_arrays(pop: Population) -> tuple[list[np.ndarray], list[list[int]], list[np.ndarray], np.ndarray]:
    """Each traveller's profile as the bidder holds it (CachedProfile: float32 arrays) and its last_seen."""
    interests, segments, loyalty, last_seen = [], [], [], []
    for t in pop.travellers:
        body = t.profile(START)
        interests.append(np.asarray(body["interests"], dtype=np.float32))
        segments.append(list(body["segments"]))
        loyalty.append(np.asarray(body["loyalty"], dtype=np.float32))
        last_seen.append(body["last_seen"])
    return interests, segments, loyalty, np.asarray(last_seen, dtype=np.float64)


class World:
    """A seed's population, truth, and the server's view of its travellers."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.population = population(seed)
        self.truth = Truth(self.population)
        self._interests, self._segments, self._loyalty, self.last_seen = _profile_arrays(self.population)
        self._base: dict[tuple[int, int], np.ndarray] = {}
        cand = features.candidate_columns(None, np.zeros(1, dtype=np.float32))  # one candidate: position 0
        self._cand = cand[0]

    def user_row(self, traveller: int, device: int, recency: float) -> np.ndarray:
        """The server's row for one impression (user block + one candidate's columns)."""
        row = features.user_block(self._interests[traveller], self._segments[traveller], self._loyalty[traveller],
                                  recency, device)
        row[features.CANDIDATE_COLUMNS] = self._cand
        return row

    def recency(self, traveller: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The server's recency feature at times `at` (epoch seconds) from the profile's last_seen."""
        return 1.0 / (1.0 + np.maximum(0.0, at - self.last_seen[traveller]) / DAY)

    def rows(self, traveller: np.ndarray, device: np.ndarray, recency: np.ndarray) -> np.ndarray:
        """(n, 256) float32 rows. The user block of one (traveller, device) differs between impressions only in
        the recency column, which user_block writes as given: each pair's block is built once by user_block and
        the recency set per impression (the same numbers as calling user_block per row; a test checks)."""
        x = np.empty((len(traveller), features.DIM), dtype=np.float32)
        pairs = traveller.astype(np.int64) * 8 + np.clip(device, 0, 7)
        uniq, inverse = np.unique(pairs, return_inverse=True)
        blocks = np.stack([self._block(int(p // 8), int(p % 8)) for p in uniq])
        x[:] = blocks[inverse]
        x[:, features.RECENCY] = recency
        return x

    def _block(self, traveller: int, device: int) -> np.ndarray:
        key = (traveller, device)
        if key not in self._base:
            self._base[key] = self.user_row(traveller, device, 0.0)
        return self._base[key]

    def impressions(self, rng: np.random.Generator, at: np.ndarray) -> dict[str, np.ndarray]:
        """Impressions at times `at` (seconds after the start): sampled as the simulator driver samples them,
        with the server's feature rows, the true CTR and a click drawn from it."""
        pop = self.population
        imps = pop.sample_impressions(rng, len(at))
        who, device = imps["traveller"], imps["device"]
        recency = self.recency(who, START + at)
        p = self.truth.p_click_features(pop.interests[who], pop.segment_matrix[who], pop.loyalty[who, 0], recency,
                                        device)
        clicked = rng.random(len(at)) < p
        return {"x": self.rows(who, device, recency), "p": p, "clicked": clicked.astype(np.float32),
                "at": at, "traveller": who, "device": device, "recency": recency}


def evaluate(seed: int = 0, hours: float = HOURS, test_rows: int = TEST_ROWS) -> dict[str, Any]:
    if not (isinstance(hours, (int, float)) and math.isfinite(hours) and 0 < hours <= MAX_HOURS):
        raise BadArgument(f"--hours must be a number of hours in (0, {MAX_HOURS:g}], got {hours!r}")
    n_train = int(round(hours * 3600 * RATE))
    if n_train < 1000:
        raise BadArgument(f"--hours {hours:g} gives {n_train} impressions at {RATE:g} a second; the trainer needs "
                          f"at least 1,000 (--hours {1000 / 3600 / RATE:.3f} or more)")
    started = time.perf_counter()
    world = World(seed)
    train_at = np.arange(n_train, dtype=np.float64) / RATE
    train = world.impressions(np.random.default_rng([seed, 0xC7, 1]), train_at)
    test_rng = np.random.default_rng([seed, 0xC7, 2])
    day_start = hours * 3600.0
    test_at = np.sort(day_start + test_rng.uniform(0.0, DAY, test_rows))
    test = world.impressions(test_rng, test_at)
    built = time.perf_counter()

    result = bidnet.train(train["x"], train["clicked"], train["at"], seed=seed, l1=TRAIN_L1,
                          epochs=TRAIN_EPOCHS)
    trained = time.perf_counter()

    y = test["clicked"]
    scores = {"oracle": test["p"], "random": metrics.predict_ctr(make_default(), test["x"]),
              "contrail": metrics.predict_ctr(result.net, test["x"])}
    rows: list[dict[str, Any]] = []
    for name, p in scores.items():
        m = metrics.metrics_of(p, y)
        rows.append({"name": name, "auc": m["auc"], "auc_se": m["auc_se"], "log_loss": m["log_loss"],
                     "ece": m["ece"], "mean_ctr": m["mean_ctr"]})
    oracle_auc = rows[0]["auc"]
    for r in rows:
        r["auc_gap"] = oracle_auc - r["auc"]
    contrail = rows[2]
    goal = {"oracle_auc_at_least": GOAL_ORACLE_AUC, "max_gap": GOAL_GAP,
            "oracle_nontrivial": bool(oracle_auc >= GOAL_ORACLE_AUC),
            "contrail_within": bool(contrail["auc_gap"] <= GOAL_GAP)}
    goal["holds"] = goal["oracle_nontrivial"] and goal["contrail_within"]
    return {
        "seed": seed, "hours": hours, "rate": RATE,
        "train": {"rows": n_train, "clicks": int(train["clicked"].sum()), "epochs": result.epochs,
                  "best_epoch": result.best_epoch, "calibration": list(result.calibration),
                  "holdout_auc": result.holdout["auc"], "l1": TRAIN_L1},
        "test": {"rows": test_rows, "clicks": int(y.sum()), "rate": float(y.mean()),
                 "from_hour": day_start / 3600, "to_hour": (day_start + DAY) / 3600},
        "rows": rows, "goal": goal,
        "seconds": {"data": round(built - started, 2), "train": round(trained - built, 2),
                    "total": round(time.perf_counter() - started, 2)},
    }


def table(report: dict[str, Any]) -> str:
    tr, te, g = report["train"], report["test"], report["goal"]
    lines = [f"seed {report['seed']}: trained on {report['hours']:g} simulated hours ({tr['rows']:,} impressions at "
             f"{report['rate']:g}/s, {tr['clicks']:,} clicks; {tr['epochs']} epochs, best {tr['best_epoch']}); "
             f"tested on a fresh day, hours {te['from_hour']:g}-{te['to_hour']:g} ({te['rows']:,} impressions, "
             f"{te['clicks']:,} clicks, {100 * te['rate']:.2f}%)", ""]
    head = f"{'model':<8}  {'AUC':>6}  {'± se':>6}  {'log-loss':>8}  {'ECE':>7}  {'mean CTR':>8}  {'AUC gap':>7}"
    lines += [head, "-" * len(head)]
    for r in report["rows"]:
        lines.append(f"{r['name']:<8}  {r['auc']:6.4f}  {r['auc_se']:6.4f}  {r['log_loss']:8.5f}  {r['ece']:7.5f}  "
                     f"{100 * r['mean_ctr']:7.3f}%  {r['auc_gap']:+7.4f}")
    yes = {True: "yes", False: "no"}
    lines += ["", f"goal: oracle AUC >= {g['oracle_auc_at_least']:.2f}: {yes[g['oracle_nontrivial']]}; contrail "
                  f"within {g['max_gap']:.2f} of the oracle: {yes[g['contrail_within']]} -> "
                  f"{'HOLDS' if g['holds'] else 'DOES NOT HOLD'}",
              f"{report['seconds']['total']:.1f} s (data {report['seconds']['data']:.1f} s, training "
              f"{report['seconds']['train']:.1f} s)"]
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(_clean(report), indent=2)
