"""Interaction logs as index arrays, item metadata, and the leave-last-out split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """One row per event: dense user and item indexes, event time (epoch s) and feedback weight.

    Rows are in time order per user (`sorted_by_user_time` makes them so); weights are the
    feedback-type weights (view 1, click 3, cart 5, purchase 10; negative feedback is negative).
    `kind` tells purchases apart for frequently-bought-together (True = purchase).
    """

    user: np.ndarray    # (n,) int32
    item: np.ndarray    # (n,) int32
    time: np.ndarray    # (n,) float64 epoch seconds
    weight: np.ndarray  # (n,) float32
    purchase: np.ndarray  # (n,) bool
    n_users: int
    n_items: int

    @classmethod
    def build(cls, user: np.ndarray, item: np.ndarray, time: np.ndarray, n_users: int, n_items: int,
              weight: np.ndarray | None = None, purchase: np.ndarray | None = None) -> Interactions:
        """Check shapes and ranges; sort by (user, time) keeping the given order among equal times."""
        u = np.asarray(user, dtype=np.int32)
        i = np.asarray(item, dtype=np.int32)
        t = np.asarray(time, dtype=np.float64)
        w = np.ones(len(u), dtype=np.float32) if weight is None else np.asarray(weight, dtype=np.float32)
        p = np.ones(len(u), dtype=bool) if purchase is None else np.asarray(purchase, dtype=bool)
        if not (len(u) == len(i) == len(t) == len(w) == len(p)):
            raise ValueError("user, item, time, weight and purchase must have the same length")
        if len(u) and (u.min() < 0 or u.max() >= n_users or i.min() < 0 or i.max() >= n_items):
            raise ValueError("user or item index out of range")
        if len(t) and not np.isfinite(t).all():
            raise ValueError("event times must be finite")
        order = np.lexsort((t, u))  # stable: ties in time keep their input order
        return cls(u[order], i[order], t[order], w[order], p[order], int(n_users), int(n_items))

    def __len__(self) -> int:
        return len(self.user)

    def take(self, mask: np.ndarray) -> Interactions:
        """The rows where mask is True (order kept)."""
        return Interactions(self.user[mask], self.item[mask], self.time[mask], self.weight[mask],
                            self.purchase[mask], self.n_users, self.n_items)

    @property
    def now(self) -> float:
        """The latest event time: the clock that windows, TTLs and decay run on."""
        return float(self.time.max()) if len(self) else 0.0

    def user_starts(self) -> np.ndarray:
        """(n_users + 1,) offsets: user u's rows are [starts[u], starts[u + 1])."""
        return np.searchsorted(self.user, np.arange(self.n_users + 1)).astype(np.int64)

    def matrix(self, binary: bool = True) -> sp.csr_matrix:
        """The user x item matrix: 1 where the user interacted (binary) or the summed weights."""
        data = np.ones(len(self), dtype=np.float32) if binary else self.weight
        m = sp.csr_matrix((data, (self.user, self.item)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m


@dataclass(frozen=True)
class ItemMeta:
    """What is known about items beside interactions; every field may be absent."""

    created_at: np.ndarray | None = None   # (n_items,) float64 epoch seconds, NaN where unknown
    features: sp.csr_matrix | None = None  # (n_items, n_features) e.g. one-hot categories and tags
    category: sp.csr_matrix | None = None  # (n_items, n_categories) binary membership


@dataclass(frozen=True)
class Split:
    """Leave-last-out: per user, the last event is the held-out item and the rest train."""

    train: Interactions
    users: np.ndarray  # (m,) int32 users that are evaluated
    held_out: np.ndarray  # (m,) int32 their held-out item
    held_at: np.ndarray  # (m,) float64 the time of their held-out event
    skipped: int  # users left out: fewer than two events, or the held-out item already seen in training


def leave_last_out(inter: Interactions) -> Split:
    """Hold out each user's last event by time (input order breaks ties); train on the rest.

    A user is evaluated when they have at least one training event and the held-out item is not
    among their training items (full ranking excludes seen items, so such a user could never hit).
    """
    starts = inter.user_starts()
    counts = np.diff(starts)
    has = counts > 0
    last = starts[1:][has] - 1
    keep = np.ones(len(inter), dtype=bool)
    keep[last] = False
    train = inter.take(keep)
    users = np.flatnonzero(has).astype(np.int32)
    held = inter.item[last]
    candidates = counts[has] >= 2
    pair = train.user.astype(np.int64) * inter.n_items + train.item
    already = np.isin(users.astype(np.int64) * inter.n_items + held, pair)
    ok = candidates & ~already
    return Split(train, users[ok], held[ok].astype(np.int32), inter.time[last][ok], int(has.sum() - ok.sum()))
