"""`python -m app eval reco --data PATH`: every recommender on one leave-last-out split, one table.

Protocol: per user, the last event by time is the test item and the one before it the validation
item. The blend's weights are learned on the validation item with every signal fitted without
the last two events; then every model is fitted on all but the last event and ranks, per user,
every item the user has not interacted with in training (HR@10, NDCG@10), and separately the
test item among 99 seeded negatives (HR@10 sampled).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from eval.atomic import Dataset
from ml.reco import strategies as st
from ml.reco.blend import LearnedBlend, learn_weights, validation_users
from ml.reco.embeddings import train_bpr
from ml.reco.interactions import Interactions, leave_last_out
from ml.reco.protocol import Scorer, Task
from ml.reco.signals import item_knn

KNN_K = 50


class NothingToEvaluate(ValueError):
    """The data parses but leaves no user to evaluate."""


@dataclass(frozen=True)
class Row:
    name: str
    hr: float | None
    ndcg: float | None
    hr_sampled: float | None
    note: str = ""


@dataclass(frozen=True)
class Report:
    rows: list[Row]
    events: int
    users: int
    items: int
    evaluated: int
    skipped: int
    negatives: int
    blend: LearnedBlend
    served: str  # "learned" or "seed"
    items_file: str | None
    seconds: float
    config: st.RecoConfig = field(repr=False)


def _weights(w: tuple[float, ...]) -> str:
    return "/".join(f"{x:.3g}" for x in w)


def learn_blend(train: Interactions, data: Dataset, config: st.RecoConfig, seed: int) -> LearnedBlend:
    """Weights learned on each user's second-to-last event, with signals fitted on what came before it."""
    val = leave_last_out(train)
    users, held = validation_users(val.users, val.held_out, train.n_items, seed)
    model = st.RecoModel.fit(val.train, data.meta, config)
    ctx = st.UserContext.from_interactions(val.train, users, config)
    return learn_weights(st.blend_signals(model, ctx), val.train.matrix()[users], held)


def evaluate(data: Dataset, config: st.RecoConfig | None = None, seed: int = 0) -> Report:
    """Every baseline and strategy on the same split, the same negatives and the same run."""
    started = time.perf_counter()
    cfg = config or st.RecoConfig(seed=seed)
    test = leave_last_out(data.interactions)
    if not len(test.users):
        raise NothingToEvaluate("no user can be evaluated: each needs two or more events, the last with an item "
                         "they had not interacted with before")
    train = test.train
    blend = learn_blend(train, data, cfg, seed)
    served = blend.served

    model = st.RecoModel.fit(train, data.meta, cfg, version="eval")
    matrix = train.matrix()
    task = Task.build(matrix, test.users, test.held_out, seed)
    knn = item_knn(matrix, KNN_K)
    bpr = train_bpr(matrix, factors=cfg.factors, seed=seed)
    assert model.embeddings is not None

    def strategy(fn: st.Strategy) -> Scorer:
        return lambda users: fn(model, st.UserContext.from_interactions(train, users, cfg))

    def blended(weights: tuple[float, ...]) -> Scorer:
        return lambda users: st.personalized(model, st.UserContext.from_interactions(train, users, cfg), weights)

    has_purchase_kinds = not bool(data.interactions.purchase.all())
    fbt_note = "" if has_purchase_kinds else "no event types: every event counts as a purchase"
    plan: list[tuple[str, Scorer | None, str]] = [
        ("MostPop", strategy(st.most_popular), ""),
        (f"ItemKNN k={KNN_K}", lambda users: np.asarray((matrix[users] @ knn).todense()), "cosine, binary"),
        (f"ALS ({cfg.factors} factors)", model.embeddings.user_scores, "implicit"),
        (f"BPR ({cfg.factors} factors)", bpr.user_scores, "implicit"),
        ("ALS item-item (recent items)", strategy(st.embedding_scores), "the blend's embedding signal"),
        ("cf", strategy(st.cf), f"co-view window {cfg.coview_window}"),
        ("frequently_bought_together", strategy(st.frequently_bought_together), fbt_note),
        ("trending", strategy(st.trending), ""),
        ("new_arrivals", strategy(st.new_arrivals), "" if data.meta.created_at is not None else
         "no created_at: first event time"),
        ("content_based", strategy(st.content_based) if model.features is not None else None,
         "item features" if model.features is not None else "not applicable: no item features"),
        (f"personalized seed {_weights(blend.seed_weights)}", blended(blend.seed_weights), "seed weights"),
        (f"personalized learned {_weights(blend.weights)}", blended(blend.weights), "learned on validation"),
        ("contrail", blended(served), "served: " + ("learned" if blend.learned_is_better else "seed") + " weights"),
    ]
    rows = []
    for name, scorer, note in plan:
        if scorer is None:
            rows.append(Row(name, None, None, None, note))
            continue
        r = task.evaluate(scorer)
        rows.append(Row(name, r.hr, r.ndcg, r.hr_sampled if task.negatives.shape[1] else None, note))
    inter = data.interactions
    return Report(rows, len(inter), inter.n_users, inter.n_items, len(test.users), test.skipped,
                  int(task.negatives.shape[1]), blend, "learned" if blend.learned_is_better else "seed",
                  str(data.items_file) if data.items_file else None, time.perf_counter() - started, cfg)


def _num(x: float | None) -> str:
    return "   n/a" if x is None else f"{x:.4f}"


def table(report: Report) -> str:
    """The report as a plain-text table with the protocol's facts above and the blend's below."""
    width = max(len(r.name) for r in report.rows)
    head = f"{'model':<{width}}  HR@10   NDCG@10  HR@10 ({report.negatives} sampled)  note"
    lines = [
        f"{report.events} events, {report.users} users, {report.items} items"
        + (f", item features from {report.items_file}" if report.items_file else ""),
        f"leave-last-out by time: {report.evaluated} users evaluated ({report.skipped} skipped: fewer than 2 "
        "events or the held-out item seen before); full ranking over each user's unseen items",
        "", head, "-" * len(head)]
    for r in report.rows:
        lines.append(f"{r.name:<{width}}  {_num(r.hr)}  {_num(r.ndcg)}   {_num(r.hr_sampled)}"
                     f"{' ' * 14}{r.note}".rstrip())
    b = report.blend
    lines += ["",
              f"blend weights (coview/embedding/popularity/recency): seed {_weights(b.seed_weights)} -> validation "
              f"HR@10 {b.seed_score[0]:.4f} NDCG@10 {b.seed_score[1]:.4f}; learned {_weights(b.weights)} -> "
              f"HR@10 {b.score[0]:.4f} NDCG@10 {b.score[1]:.4f}; serving the {report.served} weights",
              f"{report.seconds:.1f} s"]
    return "\n".join(lines)


def as_json(report: Report) -> str:
    """{"rows": [{"name", "hr@10", "ndcg@10", "hr@10_sampled"}], ...} with the run's facts beside the rows."""
    def rnd(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    b = report.blend
    doc = {
        "rows": [{"name": r.name, "hr@10": rnd(r.hr), "ndcg@10": rnd(r.ndcg), "hr@10_sampled": rnd(r.hr_sampled)}
                 for r in report.rows],
        "events": report.events, "users": report.users, "items": report.items,
        "evaluated_users": report.evaluated, "skipped_users": report.skipped, "negatives": report.negatives,
        "blend": {"signals": list(st.BLEND_SIGNALS), "seed_weights": list(b.seed_weights),
                  "seed_validation": {"hr@10": rnd(b.seed_score[0]), "ndcg@10": rnd(b.seed_score[1])},
                  "learned_weights": list(b.weights),
                  "learned_validation": {"hr@10": rnd(b.score[0]), "ndcg@10": rnd(b.score[1])},
                  "served": report.served},
        "config": asdict(report.config),
        "seconds": round(report.seconds, 2),
    }
    return json.dumps(doc, indent=2)
