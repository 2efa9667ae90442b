"""Retraining the recommendation model from the stored interactions (run in a worker thread, never on the loop).

ml/reco's protocol: leave-last-out by time per user. The blend's weights are learned on each user's
second-to-last event (signals fitted without the last two); the candidate (new ALS embeddings and
its served weights) and what serves now are both scored on the last event, full ranking over each
user's unseen items. What serves now is scored twice: as its recipe refitted on the same events (its own
embeddings saw most of the held-out events, and would be scored on what they learnt), and, itself, on the
held-out events newer than any it was trained on, when there are at least FRESH_USERS of them (a candidate
of the same recipe ties the first by construction; the second catches a training gone wrong). The
candidate goes live when it is not worse on either (HR@10, then NDCG@10); it is then
retrained on every interaction, and its weights learned again one split later, on each user's last event
(signals fitted without it): what serves is then the recipe `python -m app eval reco` scores as `contrail`
on the same events.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ml.reco import strategies as st
from ml.reco.blend import learn_weights, validation_users
from ml.reco.embeddings import Embeddings, train_als
from ml.reco.interactions import Interactions, ItemMeta, Split, leave_last_out
from ml.reco.protocol import Task
from state.reco import Interaction

FRESH_USERS = 30  # held-out events newer than the serving model's training it is scored on itself (fewer: not)


@dataclass(frozen=True)
class Incumbent:
    """What serves now: its embeddings (None: features only) and blend weights."""

    embeddings: Embeddings | None
    weights: tuple[float, ...]
    learned: bool = False   # its weights were learned (on the latest events of its own training), not the seed
    data_through: float | None = None  # the time of the newest event its embeddings were trained on (None: unknown)


@dataclass(frozen=True)
class Outcome:
    live: bool
    reason: str
    events: int
    users_evaluated: int
    candidate: tuple[float, float]            # (HR@10, NDCG@10) on the held-out events
    incumbent: tuple[float, float]
    weights: tuple[float, ...]                # the candidate's served blend weights
    learned: bool                             # whether they are the learned ones (else the seed)
    embeddings: Embeddings | None = None      # trained on every interaction, when live
    data_through: float | None = None         # the time of the newest of them


def interactions(rows: list[Interaction], item_index: dict[str, int], n_items: int) -> Interactions:
    users: dict[str, int] = {}
    u = np.fromiter((users.setdefault(r.user_id, len(users)) for r in rows), dtype=np.int32, count=len(rows))
    i = np.fromiter((item_index[r.item_id] for r in rows), dtype=np.int32, count=len(rows))
    t = np.fromiter((r.at for r in rows), dtype=np.float64, count=len(rows))
    w = np.fromiter((r.weight for r in rows), dtype=np.float32, count=len(rows))
    p = np.fromiter((r.kind == "purchase" for r in rows), dtype=bool, count=len(rows))
    return Interactions.build(u, i, t, max(len(users), 1), n_items, w, p)


def train(rows: list[Interaction], item_index: dict[str, int], n_items: int, meta: ItemMeta,
          config: st.RecoConfig, incumbent: Incumbent, min_events: int) -> Outcome:
    """Train, evaluate against what serves now on the same held-out events, and say whether to swap."""
    # What users did want: a dismissal in ALS's binary matrix would make the item look like what its dismissers
    # liked, and it is no hit to hold out (lists exclude it).
    inter = interactions(rows, item_index, n_items)
    inter = inter.take(inter.weight >= 0)
    nothing = (0.0, 0.0)
    if len(inter) < min_events:
        return Outcome(False, f"{len(inter)} interactions stored; training needs {min_events}", len(inter), 0,
                       nothing, nothing, incumbent.weights, False)
    test = leave_last_out(inter)
    if not len(test.users):
        return Outcome(False, "no user has two events with a new last item to hold out", len(inter), 0,
                       nothing, nothing, incumbent.weights, False)
    train_part = test.train
    # The blend's weights, learned on the validation events (never the test events).
    val = leave_last_out(train_part)
    if len(val.users):
        vmodel = st.RecoModel.fit(val.train, meta, config)
        users, held = validation_users(val.users, val.held_out, val.train.n_items, config.seed)
        ctx = st.UserContext.from_interactions(val.train, users, config)
        blend = learn_weights(st.blend_signals(vmodel, ctx), val.train.matrix()[users], held)
        weights, learned = blend.served, blend.learned_is_better
    else:
        weights, learned = st.SEED_WEIGHTS, False
    candidate_model = st.RecoModel.fit(train_part, meta, config)
    task = Task.build(train_part.matrix(), test.users, test.held_out, config.seed, n_negatives=0)
    ctx_cache: dict[int, st.UserContext] = {}

    def context(users: np.ndarray) -> st.UserContext:
        key = int(users[0]) if len(users) else -1
        if key not in ctx_cache:
            ctx_cache.clear()
            ctx_cache[key] = st.UserContext.from_interactions(train_part, users, config)
        return ctx_cache[key]

    cand = task.evaluate(lambda users: st.personalized(candidate_model, context(users), weights))
    # What serves now is scored as its recipe: embeddings fit on the same training part (its own were trained on
    # every event, the held-out ones too, and would be scored on what they saw), and learned weights learned as
    # the candidate's were (its own were learned on the latest events of its day, which may be these held-out
    # ones); seed weights as they are.
    inc_model = candidate_model if incumbent.embeddings is not None else \
        dataclasses.replace(candidate_model, embeddings=None)
    inc_weights = weights if incumbent.learned else incumbent.weights
    inc = task.evaluate(lambda users: st.personalized(inc_model, context(users), inc_weights))
    cand_score, inc_score, evaluated = (cand.hr, cand.ndcg), (inc.hr, inc.ndcg), len(test.users)
    if cand_score < inc_score:
        return Outcome(False, "the candidate did worse on the held-out events than the model serving now",
                       len(inter), evaluated, cand_score, inc_score, weights, learned)
    newer = fresh_users(test, incumbent)
    if newer is not None:  # what serves now, itself, where it saw nothing: the candidate's figures there too
        fresh = Task.build(train_part.matrix(), test.users[newer], test.held_out[newer], config.seed, n_negatives=0)
        assert incumbent.embeddings is not None  # fresh_users found some
        served = dataclasses.replace(candidate_model, embeddings=incumbent.embeddings.covering(n_items))
        cand_f = fresh.evaluate(lambda users: st.personalized(candidate_model, context(users), weights))
        inc_f = fresh.evaluate(lambda users: st.personalized(served, context(users), incumbent.weights))
        cand_score, inc_score, evaluated = (cand_f.hr, cand_f.ndcg), (inc_f.hr, inc_f.ndcg), len(fresh.users)
        if cand_score < inc_score:
            return Outcome(False, f"the candidate did worse than the model serving now on the {evaluated} held-out "
                                  "events newer than that model's training", len(inter), evaluated, cand_score,
                           inc_score, weights, learned)
    embeddings = train_als(inter.matrix(), config.factors, config.als_regularization, config.als_alpha,
                           config.als_iterations, config.seed, config.threads)
    # As the embeddings now see every event, the served weights are learned on the latest ones: each user's last
    # event, from the candidate's signals (fitted without it).
    users, held = validation_users(test.users, test.held_out, train_part.n_items, config.seed)
    latest = learn_weights(st.blend_signals(candidate_model, st.UserContext.from_interactions(train_part, users,
                                                                                              config)),
                           train_part.matrix()[users], held)
    how = "" if newer is None else f", and on the {evaluated} held-out events newer than that model's training"
    return Outcome(True, f"evaluated as good as or better than the model serving now{how}", len(inter), evaluated,
                   cand_score, inc_score, latest.served, latest.learned_is_better, embeddings,
                   float(inter.time.max()))


def fresh_users(test: Split, incumbent: Incumbent) -> np.ndarray | None:
    """Which of the evaluated users' held-out events are newer than every event the serving model's embeddings
    were trained on (a mask), when there are at least FRESH_USERS; None when there are fewer, or nothing to
    compare (no embeddings serve, or their training's time is unknown)."""
    if incumbent.embeddings is None or incumbent.data_through is None:
        return None
    newer = test.held_at > incumbent.data_through
    return newer if int(newer.sum()) >= FRESH_USERS else None
