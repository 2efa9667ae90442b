"""The strategies as scoring functions: a fitted RecoModel and a block of users' context -> (users, items) scores.

The same functions serve the offline evaluation and the live API; only where the model and the
context come from differs (batch from logged interactions here, incremental features online).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ml.reco import signals
from ml.reco.embeddings import Embeddings, train_als
from ml.reco.interactions import Interactions, ItemMeta
from ml.reco.ranking import lexicographic, zscore_rows

DAY = 86400.0
BLEND_SIGNALS = ("coview", "embedding", "popularity", "recency")
SEED_WEIGHTS = (0.4, 0.3, 0.2, 0.1)


@dataclass(frozen=True)
class RecoConfig:
    """Windows, decays and model sizes; 0 disables a TTL, window or half-life."""

    coview_window: int = 10  # each event pairs with the user's previous N events
    coview_ttl_s: float = 0.0  # ... that came at most this long before it
    coview_half_life_s: float = 0.0  # decay of co-view counts on event time
    fbt_window: int = 50  # purchases pair with the user's previous N purchases
    fbt_ttl_s: float = DAY  # ... bought within a day: "together"
    recent_n: int = 50  # the recent-items list a user is scored from
    recent_position_decay: float = 0.7  # the k-th most recent item weighs decay^k
    recent_half_life_s: float = 0.0  # and 2^(-age/half-life), age from the user's latest event
    popularity_half_life_s: float = 30 * DAY
    trending_window_s: float = 7 * DAY
    recency_half_life_s: float = 7 * DAY  # item recency: 2^(-(now - item's latest event)/half-life)
    debias: float = 0.25  # co-view scores divided by popularity^debias: less of the same popular items
    factors: int = 64
    als_regularization: float = 0.1
    als_alpha: float = 10.0
    als_iterations: int = 15
    seed: int = 0
    threads: int = 1


@dataclass(frozen=True)
class RecoModel:
    """Everything the strategies score with, fitted from one set of interactions at event time `now`."""

    config: RecoConfig
    n_items: int
    now: float
    popularity: np.ndarray  # all-time positive weight per item: MostPop and every strategy's tie-break
    decayed_popularity: np.ndarray  # popularity with popularity_half_life_s: the blend's popularity
    trending: np.ndarray  # decayed popularity within trending_window_s
    last_seen: np.ndarray  # latest event time per item (NaN: none)
    created_at: np.ndarray  # the item's creation time, else its first event (NaN: unknown)
    coview: sp.csr_matrix  # (items, items) co-occurrence within coview_window, both ways
    bought_together: sp.csr_matrix  # (items, items) co-occurrence among purchases
    embeddings: Embeddings | None
    features: sp.csr_matrix | None  # (items, features) rows scaled to unit length
    version: str = ""

    @classmethod
    def fit(cls, train: Interactions, meta: ItemMeta | None = None, config: RecoConfig | None = None,
            embeddings: Embeddings | None = None, version: str = "") -> RecoModel:
        """Compute every signal from the interactions; trains ALS unless embeddings are given."""
        cfg = config or RecoConfig()
        meta = meta or ItemMeta()
        now = train.now
        created = signals.first_seen(train)
        if meta.created_at is not None:
            created = np.where(np.isnan(meta.created_at), created, meta.created_at)
        if embeddings is None and len(train):
            embeddings = train_als(train.matrix(), cfg.factors, cfg.als_regularization, cfg.als_alpha,
                                   cfg.als_iterations, cfg.seed, cfg.threads)
        features = None
        if meta.features is not None and meta.features.nnz:
            f = sp.csr_matrix(meta.features, dtype=np.float64)
            norms = np.sqrt(np.asarray(f.multiply(f).sum(axis=1)).ravel())
            features = sp.csr_matrix(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ f)
        return cls(
            config=cfg, n_items=train.n_items, now=now,
            popularity=signals.popularity(train, now),
            decayed_popularity=signals.popularity(train, now, cfg.popularity_half_life_s),
            trending=signals.popularity(train, now, cfg.popularity_half_life_s, cfg.trending_window_s),
            last_seen=signals.last_seen(train), created_at=created,
            coview=signals.cooccurrence(train, cfg.coview_window, cfg.coview_ttl_s, cfg.coview_half_life_s, now),
            bought_together=signals.cooccurrence(train, cfg.fbt_window, cfg.fbt_ttl_s, 0.0, now,
                                                 mask=train.purchase),
            embeddings=embeddings, features=features, version=version)


@dataclass(frozen=True)
class UserContext:
    """A block of users as the strategies see them, and what their lists leave out.

    Scores never depend on `seen` or `bought_or_dismissed`: the caller excludes one of them
    (ranking.exclude), the latter by default, `seen` for `exclude=seen`.
    """

    recent: sp.csr_matrix  # (users, items) recent_n events weighted by feedback type, position and age
    purchases: sp.csr_matrix  # (users, items) the recent purchases (fbt_window of them), weight 1 each
    seen: sp.csr_matrix = field(repr=False)  # (users, items) 1 for every item interacted with
    bought_or_dismissed: sp.csr_matrix = field(repr=False)  # (users, items) 1 for items bought or dismissed

    @classmethod
    def from_interactions(cls, inter: Interactions, users: np.ndarray, config: RecoConfig) -> UserContext:
        users = np.asarray(users)
        recent = signals.user_profiles(inter, users, config.recent_n, config.recent_half_life_s,
                                       config.recent_position_decay)
        bought = inter.take(inter.purchase & (inter.weight > 0))
        purchases = signals.user_profiles(bought, users, config.fbt_window, 0.0, 1.0)
        purchases.data[:] = 1.0
        final = inter.take(inter.purchase | (inter.weight < 0))  # bought (whatever its weight) or dismissed
        return cls(recent, purchases, signals.user_items(inter, users), signals.user_items(final, users))


Strategy = Callable[[RecoModel, UserContext], np.ndarray]


def _rows(vector: np.ndarray, ctx: UserContext) -> np.ndarray:
    return np.broadcast_to(vector, (ctx.recent.shape[0], len(vector)))


def most_popular(model: RecoModel, ctx: UserContext) -> np.ndarray:
    """All-time popularity: the same list for everyone."""
    return _rows(model.popularity, ctx)


def coview_scores(model: RecoModel, ctx: UserContext) -> np.ndarray:
    """Co-occurrence with the user's recent items, divided by popularity^debias."""
    raw = np.asarray((ctx.recent @ model.coview).todense())
    return raw / np.maximum(model.popularity, 1.0) ** model.config.debias


def cf(model: RecoModel, ctx: UserContext) -> np.ndarray:
    """Items co-viewed with the user's recent items; no co-occurrence falls back to popularity."""
    return lexicographic(coview_scores(model, ctx), model.popularity)


def frequently_bought_together(model: RecoModel, ctx: UserContext) -> np.ndarray:
    """Items bought within fbt_ttl_s of the user's recent purchases; ties by popularity."""
    raw = np.asarray((ctx.purchases @ model.bought_together).todense())
    return lexicographic(raw, model.popularity)


def trending(model: RecoModel, ctx: UserContext) -> np.ndarray:
    """Decayed popularity within the trending window; items outside it by all-time popularity."""
    return _rows(lexicographic(model.trending, model.popularity), ctx)


def new_arrivals(model: RecoModel, ctx: UserContext) -> np.ndarray:
    """Newest items first (creation time, else first event); equal times by popularity."""
    created = np.where(np.isnan(model.created_at), -np.inf, model.created_at)
    return _rows(lexicographic(created, model.popularity), ctx)


def content_based(model: RecoModel, ctx: UserContext) -> np.ndarray:
    """Cosine between the user's feature profile (their recent items' features) and each item's features."""
    if model.features is None:
        raise ValueError("content_based needs item features; none were given")
    profile = ctx.recent @ model.features
    norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
    cos = np.asarray((profile @ model.features.T).todense())
    cos = np.divide(cos, norms[:, None], out=np.zeros_like(cos), where=norms[:, None] > 0)
    return lexicographic(cos, model.popularity)


def embedding_scores(model: RecoModel, ctx: UserContext) -> np.ndarray:
    """Cosine of each item's embedding with the user's recent items' embeddings, profile-weighted."""
    if model.embeddings is None:
        return np.zeros(ctx.recent.shape, dtype=np.float64)
    return model.embeddings.profile_scores(ctx.recent)


def item_recency(model: RecoModel) -> np.ndarray:
    """(items,) 2^(-(now - the item's latest event)/half-life): 1 for items active now, 0 for never seen."""
    age = model.now - np.nan_to_num(model.last_seen, nan=-np.inf)
    return signals.decay(age, model.config.recency_half_life_s) * ~np.isnan(model.last_seen)


def blend_signals(model: RecoModel, ctx: UserContext) -> list[np.ndarray]:
    """The personalized blend's inputs in BLEND_SIGNALS order, each z-scored per user."""
    constant = zscore_rows(np.stack([model.decayed_popularity, item_recency(model)]))
    return [zscore_rows(coview_scores(model, ctx)), zscore_rows(embedding_scores(model, ctx)),
            _rows(constant[0], ctx), _rows(constant[1], ctx)]


def combine(normalised: list[np.ndarray], weights: tuple[float, ...]) -> np.ndarray:
    """The weighted sum of z-scored signals."""
    out = np.zeros(normalised[0].shape, dtype=np.float64)
    for w, x in zip(weights, normalised, strict=True):
        if w:
            out += w * x
    return out


def personalized(model: RecoModel, ctx: UserContext, weights: tuple[float, ...] = SEED_WEIGHTS) -> np.ndarray:
    """Co-view, embedding similarity, popularity and item recency, z-scored per user and weighted."""
    return combine(blend_signals(model, ctx), weights)


STRATEGIES: dict[str, Strategy] = {
    "cf": cf,
    "content_based": content_based,
    "frequently_bought_together": frequently_bought_together,
    "trending": trending,
    "new_arrivals": new_arrivals,
    "personalized": personalized,
}


def strongest_anchor(ctx: UserContext, matrix: sp.csr_matrix, row: int, items: np.ndarray) -> np.ndarray:
    """For one user's recommended items, the recent item that contributed most (-1: none): the reason shown."""
    recent = ctx.recent[row]
    anchors, weights = recent.indices, recent.data
    if not len(anchors):
        return np.full(len(items), -1, dtype=np.int64)
    contrib = np.asarray(matrix[anchors][:, np.asarray(items)].todense()) * weights[:, None]
    best = contrib.argmax(axis=0)
    return np.where(contrib.max(axis=0) > 0, anchors[best], -1).astype(np.int64)


def in_categories(category: sp.csr_matrix, wanted: np.ndarray) -> np.ndarray:
    """(items,) True for items in any of the wanted category columns."""
    return np.asarray(category[:, np.asarray(wanted)].sum(axis=1)).ravel() > 0
