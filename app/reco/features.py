"""The real-time recommendation features, updated per event on event time and bounded in memory.

The batch definitions are in ml/reco/signals.py; this keeps the same quantities incrementally, so
that a replay of history gives the model the offline evaluation fits (docs/reco.md):
- item popularity, all-time and decayed (multiplied by 2^(-dt/half-life) as event time moves on);
- co-view counts, both ways: each positive event pairs with the user's previous `coview_window`
  positive events that came within `coview_ttl_s`; bought-together likewise among purchases;
- per user, the last `recent_n` events (an LRU of users: the least recently active are forgotten
  and reloaded from the store when they come back), the items seen, and those bought or dismissed.

A checkpoint (`capture` on the loop, `Frozen.copy` and `encode_checkpoint` in a worker thread, `restore` at start)
holds all of it, so a start replays only the interactions stored after it (docs/reco.md, "Checkpoints").
"""

from __future__ import annotations

import io
import itertools
import math
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import scipy.sparse as sp

from app.runtime.lru import LRU
from ml.reco import kernels
from ml.reco.embeddings import Embeddings
from ml.reco.strategies import RecoConfig, RecoModel, UserContext
from state.reco import Interaction, RecoItem

TRENDING_EVENTS = 500_000  # events held for the trending window (beyond it the oldest leave the sums early)
CHECKPOINT_FORMAT = 1
_USER_ARRAYS = (("item", np.int32), ("at", np.float64), ("weight", np.float32), ("purchase", np.int8),
                ("seen", np.int32), ("final", np.int32))  # UserState's typed arrays
_TYPECODES = {"item": "i", "at": "d", "weight": "f", "purchase": "b", "seen": "i", "final": "i"}


class UserState:
    """One user's latest events (compact typed arrays, newest last) and the items seen, bought or dismissed.

    17 bytes an event plus the arrays' headers: a user with 10 events takes about 1 KB with their LRU entry
    (docs/reco.md).
    """

    __slots__ = ("item", "at", "weight", "purchase", "seen", "final", "version")

    def __init__(self) -> None:
        self.item = array("i")
        self.at = array("d")
        self.weight = array("f")
        self.purchase = array("b")
        self.seen = array("i")    # every item interacted with, once each
        self.final = array("i")   # bought or dismissed: never recommended back
        self.version = 0          # the feature sequence at this user's latest event

    def __len__(self) -> int:
        return len(self.item)

    def append(self, item: int, at: float, weight: float, purchase: bool, cap: int) -> None:
        self.item.append(item)
        self.at.append(at)
        self.weight.append(weight)
        self.purchase.append(1 if purchase else 0)
        if len(self.item) > cap:
            del self.item[0], self.at[0], self.weight[0], self.purchase[0]

    def previous(self, window: int, purchases: bool) -> list[tuple[int, float, float]]:
        """The latest `window` positive events (purchases only, when asked), oldest first: what a new one pairs with."""
        out: list[tuple[int, float, float]] = []
        for k in range(len(self.item) - 1, -1, -1):
            if len(out) >= window:
                break
            if self.weight[k] > 0 and (not purchases or self.purchase[k]):
                out.append((self.item[k], self.at[k], self.weight[k]))
        out.reverse()
        return out


class ItemIndex:
    """Item ids to dense indexes (append-only), with each item's metadata."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.meta: dict[str, RecoItem] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def ensure(self, item_id: str) -> int:
        i = self.index.get(item_id)
        if i is None:
            i = self.index[item_id] = len(self.ids)
            self.ids.append(item_id)
        return i

    def category(self, i: int) -> str | None:
        item = self.meta.get(self.ids[i])
        return item.category if item is not None else None


def _grow(a: np.ndarray, n: int, fill: float) -> np.ndarray:
    if len(a) >= n:
        return a
    out = np.full(max(n, 2 * len(a), 64), fill, dtype=a.dtype)
    out[:len(a)] = a
    return out


class LiveFeatures:
    """Every feature the strategies score with, kept per event; `model()` is a RecoModel snapshot of them."""

    def __init__(self, config: RecoConfig, recent_ttl_s: float, max_users: int) -> None:
        self.config = config
        self.recent_ttl_s = recent_ttl_s
        self.items = ItemIndex()
        self.users: LRU[str, UserState] = LRU(max_users, "reco_users")
        self.now = 0.0            # the latest event time seen: the clock windows, TTLs and decay run on
        self.sequence = 0         # events applied
        self._popularity = np.zeros(0)
        self._decayed = np.zeros(0)
        self._first = np.zeros(0)
        self._last = np.zeros(0)
        self._coview_base = sp.csr_matrix((0, 0), dtype=np.float32)
        self._coview: dict[tuple[int, int], float] = {}
        self._fbt_base = sp.csr_matrix((0, 0), dtype=np.float32)
        self._fbt: dict[tuple[int, int], float] = {}
        self._trending: deque[tuple[int, float, float]] = deque()  # at most TRENDING_EVENTS
        self._trend = np.zeros(0)  # decayed popularity of the trending window's events
        self._snapshot: RecoModel | None = None
        self._features: sp.csr_matrix | None = None
        self._hidden: np.ndarray | None = None
        self._categories: np.ndarray | None = None
        self.embeddings: Embeddings | None = None
        self.version = ""

    # ---- items ----
    def put_item(self, item: RecoItem) -> int:
        i = self.items.ensure(item.item_id)
        self.items.meta[item.item_id] = item
        self._size()
        self._snapshot = self._features = self._hidden = self._categories = None
        return i

    def _size(self) -> None:
        n = len(self.items)
        self._popularity = _grow(self._popularity, n, 0.0)
        self._decayed = _grow(self._decayed, n, 0.0)
        self._trend = _grow(self._trend, n, 0.0)
        self._first = _grow(self._first, n, np.nan)
        self._last = _grow(self._last, n, np.nan)

    def hidden(self) -> np.ndarray:
        """(items,) True for items that must never be shown (cached until an item changes)."""
        if self._hidden is None or len(self._hidden) != len(self.items):
            out = np.zeros(len(self.items), dtype=bool)
            for item_id, item in self.items.meta.items():
                out[self.items.index[item_id]] = item.hidden
            self._hidden = out
        return self._hidden

    def in_categories(self, wanted: set[str]) -> np.ndarray:
        if self._categories is None or len(self._categories) != len(self.items):
            self._categories = np.array([self.items.category(i) or "" for i in range(len(self.items))], dtype=object)
        return np.isin(self._categories, list(wanted))

    # ---- events ----
    @property
    def events_per_user(self) -> int:
        """Events held per user: enough for the recent list, the co-view window and the purchases paired."""
        c = self.config
        return max(c.recent_n, c.coview_window, c.fbt_window)

    def restore_user(self, user_id: str, history: list[Interaction], seen: list[str], final: list[str]) -> UserState:
        """A forgotten user's state from their stored latest interactions (not counted in the features again)."""
        existing = self.users.get(user_id)
        if existing is not None:  # another request restored or created it while the store was read
            return existing
        state = UserState()
        cap = self.events_per_user
        for row in history:
            state.append(self.items.ensure(row.item_id), row.at, row.weight, row.kind == "purchase", cap)
        state.seen.extend(sorted({self.items.ensure(i) for i in seen}))
        state.final.extend(sorted({self.items.ensure(i) for i in final}))
        self._size()
        state.version = self.sequence
        self.users.put(user_id, state)
        return state

    def apply(self, row: Interaction) -> None:
        """One event: popularity, co-view and bought-together counts, the user's lists; on event time."""
        item = self.items.ensure(row.item_id)
        self._size()
        at, w = row.at, row.weight
        purchase = row.kind == "purchase"
        state = self.users.get(row.user_id)
        if state is None:
            state = UserState()
            self.users.put(row.user_id, state)
        hl, window = self.config.popularity_half_life_s, self.config.trending_window_s
        if at > self.now:
            if hl > 0 and self.now:
                factor = math.exp2(-(at - self.now) / hl)
                self._decayed[:len(self.items)] *= factor
                self._trend[:len(self.items)] *= factor
            self.now = at
            self._expire_trending()
        if w > 0:
            self._popularity[item] += w
            decayed = w * (math.exp2(-(self.now - at) / hl) if hl > 0 else 1.0)
            self._decayed[item] += decayed
            if window <= 0 or self.now - at <= window:
                self._trend[item] += decayed
                if window > 0:
                    self._trending.append((item, at, w))
                    self._expire_trending(len(self._trending) - TRENDING_EVENTS)
            c = self.config
            if c.coview_window > 0:
                self._pair(self._coview, state.previous(c.coview_window, False), item, at, w, c.coview_ttl_s)
            if purchase:
                self._pair(self._fbt, state.previous(c.fbt_window, True), item, at, w, c.fbt_ttl_s)
        self._first[item] = at if np.isnan(self._first[item]) else min(self._first[item], at)
        self._last[item] = at if np.isnan(self._last[item]) else max(self._last[item], at)
        state.append(item, at, w, purchase, self.events_per_user)
        if item not in state.seen:
            state.seen.append(item)
        if (purchase or row.kind == "dismiss") and item not in state.final:  # by kind, whatever its weight
            state.final.append(item)
        self.sequence += 1
        state.version = self.sequence
        self._snapshot = None

    @staticmethod
    def _pair(counts: dict[tuple[int, int], float], previous: list[tuple[int, float, float]], item: int,
              at: float, w: float, ttl_s: float) -> None:
        """Count the new event with each earlier one (within ttl_s), both ways: sqrt(w_a * w_b)."""
        for other, t, wo in previous:
            if other == item or (ttl_s > 0 and at - t > ttl_s):
                continue
            v = math.sqrt(w * wo)
            counts[(item, other)] = counts.get((item, other), 0.0) + v
            counts[(other, item)] = counts.get((other, item), 0.0) + v

    # ---- snapshots ----
    def _matrix(self, base: sp.csr_matrix, delta: dict[tuple[int, int], float]) -> sp.csr_matrix:
        n = len(self.items)
        if base.shape[0] != n:
            base = sp.csr_matrix((base.data, base.indices, base.indptr), shape=base.shape)
            base.resize((n, n))
        if delta:
            keys = np.array(list(delta.keys()), dtype=np.int64).reshape(-1, 2)
            vals = np.fromiter(delta.values(), dtype=np.float64, count=len(delta))
            base = (base + sp.csr_matrix((vals, (keys[:, 0], keys[:, 1])), shape=(n, n))).astype(np.float32)
            delta.clear()
        return sp.csr_matrix(base)

    def _item_features(self) -> sp.csr_matrix | None:
        """(items, feature columns), cached until an item changes, or an event names an item never registered (a
        row more: the cache is a row short of every other array, as `hidden` checks too)."""
        if self._features is None or self._features.shape[0] != len(self.items):
            columns: dict[str, int] = {}
            rows, cols, vals = [], [], []
            for item_id, item in self.items.meta.items():
                i = self.items.index[item_id]
                pairs = ([(f"c:{item.category}", 1.0)] if item.category else []) + [(f"t:{t}", 1.0) for t in item.tags]
                pairs += [(f"f:{k}", float(v)) for k, v in item.features.items()]
                for name, v in pairs:
                    rows.append(i)
                    cols.append(columns.setdefault(name, len(columns)))
                    vals.append(v)
            self._features = sp.csr_matrix((vals, (rows, cols)), shape=(len(self.items), max(len(columns), 1)))
        return self._features if self._features.nnz else None

    def _expire_trending(self, beyond_cap: int = 0) -> None:
        """Take the events that left the trending window (and the oldest beyond the cap, which bounds memory
        under heavy traffic) out of the trending sums, at their decayed weight now."""
        window, hl = self.config.trending_window_s, self.config.popularity_half_life_s
        while self._trending and (beyond_cap > 0 or self.now - self._trending[0][1] > window):
            beyond_cap -= 1
            item, at, w = self._trending.popleft()
            self._trend[item] -= w * (math.exp2(-(self.now - at) / hl) if hl > 0 else 1.0)
            if self._trend[item] < 1e-9:
                self._trend[item] = 0.0

    def model(self) -> RecoModel:
        """The features as a RecoModel (rebuilt only after a change) with the live embeddings."""
        if self._snapshot is not None:
            return self._snapshot
        n = len(self.items)
        self._coview_base = self._matrix(self._coview_base, self._coview)
        self._fbt_base = self._matrix(self._fbt_base, self._fbt)
        created = self._first[:n].copy()
        for item_id, item in self.items.meta.items():
            if item.created_at is not None:
                created[self.items.index[item_id]] = item.created_at
        emb = self.embeddings
        if emb is not None and emb.item_factors.shape[0] < n:  # items registered after the model was trained
            emb = self.embeddings = emb.covering(n)
        self._snapshot = RecoModel(
            config=self.config, n_items=n, now=self.now, popularity=self._popularity[:n].copy(),
            decayed_popularity=self._decayed[:n].copy(), trending=self._trend[:n].copy(),
            last_seen=self._last[:n].copy(), created_at=created, coview=self._coview_base,
            bought_together=self._fbt_base, embeddings=emb, features=self._normalised(self._item_features()),
            version=self.version)
        return self._snapshot

    @staticmethod
    def _normalised(f: sp.csr_matrix | None) -> sp.csr_matrix | None:
        if f is None:
            return None
        norms = np.sqrt(np.asarray(f.multiply(f).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ f)

    def set_embeddings(self, embeddings: Embeddings | None, version: str) -> None:
        """Swap the trained model in (one assignment each; the next snapshot serves it)."""
        self.embeddings, self.version, self._snapshot = embeddings, version, None

    def context(self, state: UserState | None) -> UserContext:
        """One user's row of the strategies' UserContext (an empty row for an unknown user)."""
        n = len(self.items)
        c = self.config

        def row(pairs: list[tuple[int, float]]) -> sp.csr_matrix:
            m = sp.csr_matrix(([w for _, w in pairs], ([0] * len(pairs), [i for i, _ in pairs])), shape=(1, n))
            m.sum_duplicates()
            return m

        if state is None:
            empty = sp.csr_matrix((1, n))
            return UserContext(empty, empty, empty, empty)
        ttl = self.recent_ttl_s
        latest = range(max(0, len(state) - c.recent_n), len(state))
        events = [(state.item[j], float(state.weight[j])) for j in latest
                  if ttl <= 0 or self.now - state.at[j] <= ttl]
        k = len(events)
        recent = row([(i, w * c.recent_position_decay ** (k - 1 - j)) for j, (i, w) in enumerate(events)])
        purchases = row([(i, 1.0) for i, _, _ in state.previous(c.fbt_window, True)])
        purchases.data[:] = 1.0
        return UserContext(recent, purchases, row([(i, 1.0) for i in state.seen]),
                           row([(i, 1.0) for i in state.final]))

    def recent_row(self, state: UserState) -> tuple[np.ndarray, np.ndarray]:
        """The `recent` row of `context(state)` as (sorted item indices, weights), without building a sparse matrix
        (the fast path of a single list; one compiled loop over the user's event arrays, read in place)."""
        c = self.config
        start = max(0, len(state) - c.recent_n)
        return kernels.recent_row(np.frombuffer(state.item, dtype=np.int32), np.frombuffer(state.at),
                                  np.frombuffer(state.weight, dtype=np.float32), start, float(self.now),
                                  float(self.recent_ttl_s), float(c.recent_position_decay))

    def rebuild(self, rows: list[Interaction]) -> None:
        """Start over from the stored interactions, in arrival order (as they were applied live)."""
        for r in rows:
            self.apply(r)

    # ---- checkpoints ----
    def settings(self) -> dict[str, float]:
        """The settings the features are built with: a checkpoint made under others is not restored."""
        c = self.config
        return {"coview_window": c.coview_window, "coview_ttl_s": c.coview_ttl_s, "fbt_window": c.fbt_window,
                "fbt_ttl_s": c.fbt_ttl_s, "recent_n": c.recent_n,
                "popularity_half_life_s": c.popularity_half_life_s, "trending_window_s": c.trending_window_s,
                "trending_events": TRENDING_EVENTS}

    def capture(self, covered: int) -> Frozen:
        """The start of a checkpoint, on the loop with no await: the features are then exactly those of the
        interactions up to id `covered`. The co-view and bought-together deltas are merged into their bases
        first, as a snapshot does, and the item-side arrays copied; the users (in LRU order, oldest first) and the
        trending window are taken by reference, for `Frozen.copy` in a worker thread: the caller applies no
        interaction until that copy is done (only `apply` changes a user's arrays or the window)."""
        n = len(self.items)
        self._coview_base = self._matrix(self._coview_base, self._coview)
        self._fbt_base = self._matrix(self._fbt_base, self._fbt)
        arrays = {"popularity": self._popularity[:n].copy(), "decayed": self._decayed[:n].copy(),
                  "trend": self._trend[:n].copy(), "first": self._first[:n].copy(), "last": self._last[:n].copy()}
        for name, m in (("coview", self._coview_base), ("fbt", self._fbt_base)):
            arrays[f"{name}_data"] = m.data.copy()
            arrays[f"{name}_indices"] = m.indices.copy()
            arrays[f"{name}_indptr"] = m.indptr.copy()
        meta = {"format": CHECKPOINT_FORMAT, "covered": covered, "now": self.now, "sequence": self.sequence,
                "settings": self.settings()}
        return Frozen(meta, self.items.ids[:n], arrays, self._trending, list(self.users.items()))

    def restore(self, body: bytes, covered: int) -> None:
        """The features from a checkpoint (before any item is put or interaction applied): the items in its
        order, so the indexes match, its arrays, matrices, trending window and users (in LRU order). Everything
        is read and checked first: a body that fails (ValueError and the like) leaves the features untouched."""
        if len(self.items) or self.sequence:
            raise RuntimeError("a checkpoint is restored into empty features only")
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        meta = _decode_json(a["meta"])
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("covered") != covered:
            raise ValueError(f"checkpoint format {meta.get('format')} covering {meta.get('covered')}, "
                             f"expected format {CHECKPOINT_FORMAT} covering {covered}")
        if meta.get("settings") != self.settings():
            raise ValueError(f"checkpoint made with other settings: {meta.get('settings')}")
        ids = _decode_json(a["items"])
        n = len(ids)
        if len(set(ids)) != n or not all(isinstance(i, str) for i in ids):
            raise ValueError("checkpoint item ids are not distinct strings")
        vectors = {k: a[k].astype(np.float64) for k in ("popularity", "decayed", "trend", "first", "last")}
        if any(v.shape != (n,) for v in vectors.values()):
            raise ValueError("checkpoint item arrays do not match its items")
        matrices = {}
        for name in ("coview", "fbt"):
            m = sp.csr_matrix((a[f"{name}_data"].astype(np.float32), a[f"{name}_indices"], a[f"{name}_indptr"]),
                              shape=(n, n))
            m.check_format(full_check=True)
            matrices[name] = m
        tr = a["trending"].reshape(-1, 3)
        if len(tr) and (tr[:, 0].min() < 0 or tr[:, 0].max() >= n):
            raise ValueError("checkpoint trending window names unknown items")
        trending = deque((int(i), float(t), float(w)) for i, t, w in tr.tolist())
        users = _decode_json(a["users"])
        lengths = {name: a[f"user_{name}_lengths"].astype(np.int64) for name in ("item", "seen", "final")}
        events = {name: a[f"user_{name}"] for name, _ in _USER_ARRAYS}
        for name, dtype in _USER_ARRAYS:
            counted = lengths["item" if name in ("item", "at", "weight", "purchase") else name]
            if len(counted) != len(users) or events[name].dtype != dtype or len(events[name]) != counted.sum():
                raise ValueError(f"checkpoint users' {name} arrays do not match their lengths")
        for name in ("item", "seen", "final"):
            if len(events[name]) and (events[name].min() < 0 or events[name].max() >= n):
                raise ValueError(f"checkpoint users' {name} names unknown items")
        offsets = {name: np.concatenate([[0], np.cumsum(v)]).tolist() for name, v in lengths.items()}
        joined: dict[str, array[Any]] = {}
        for name, _ in _USER_ARRAYS:  # each as one typed array, which each user's is a slice of
            joined[name] = array(_TYPECODES[name])
            joined[name].frombytes(events[name].view(np.uint8))
        item, at, weight, purchase = joined["item"], joined["at"], joined["weight"], joined["purchase"]
        seen, final = joined["seen"], joined["final"]
        o, os, of = offsets["item"], offsets["seen"], offsets["final"]
        version = int(meta["sequence"])
        states = []
        keep = range(max(0, len(users) - self.users.capacity), len(users))  # the most recent, if fewer are held now
        for k in keep:
            state = UserState()
            a, b = o[k], o[k + 1]
            state.item, state.at, state.weight, state.purchase = item[a:b], at[a:b], weight[a:b], purchase[a:b]
            state.seen, state.final = seen[os[k]:os[k + 1]], final[of[k]:of[k + 1]]
            state.version = version
            states.append((users[k], state))
        # All read: from here on nothing fails.
        for item_id in ids:
            self.items.ensure(item_id)
        self._popularity, self._decayed, self._trend = vectors["popularity"], vectors["decayed"], vectors["trend"]
        self._first, self._last = vectors["first"], vectors["last"]
        self._coview_base, self._fbt_base = matrices["coview"], matrices["fbt"]
        self._coview.clear()
        self._fbt.clear()
        self._trending = trending
        for user_id, state in states:
            self.users.put(user_id, state)
        self.now, self.sequence = float(meta["now"]), int(meta["sequence"])
        self._snapshot = self._features = self._hidden = self._categories = None


@dataclass(frozen=True, slots=True)
class Frozen:
    """What `LiveFeatures.capture` took on the loop: copies of the item-side arrays; the users and the trending
    window by reference (unchanged until the next interaction is applied)."""
    meta: dict[str, Any]
    items: list[str]
    arrays: dict[str, np.ndarray]
    trending: deque[tuple[int, float, float]]
    users: list[tuple[str, UserState]]

    def copy(self, chunk: int = 10_000) -> Captured:
        """Copies of the users' typed arrays (each joined across users, in LRU order) and of the trending window
        (three arrays), in a worker thread before any interaction is applied. A chunk of users or events at a
        time: each step is one C call holding the GIL, and the loop runs between them."""
        states = [s for _, s in self.users]
        lengths = {name: np.fromiter((len(getattr(s, name)) for s in states), dtype=np.int64, count=len(states))
                   for name in ("item", "seen", "final")}
        joined = {name: b"".join([b"".join([getattr(s, name) for s in states[lo:lo + chunk]])
                                  for lo in range(0, len(states), chunk)]) for name, _ in _USER_ARRAYS}
        events = iter(self.trending)
        parts = [np.zeros((0, 3))]
        while part := list(itertools.islice(events, chunk)):
            parts.append(np.array(part, dtype=np.float64))  # item indexes are exact in float64
        return Captured(self.meta, self.items, self.arrays, np.concatenate(parts), [u for u, _ in self.users],
                        lengths, joined)


@dataclass(frozen=True, slots=True)
class Captured:
    """A checkpoint's content, copied: `encode_checkpoint` makes its body in a worker thread."""
    meta: dict[str, Any]
    items: list[str]
    arrays: dict[str, np.ndarray]
    trending: np.ndarray                  # (events, 3): item, at, weight
    user_ids: list[str]
    user_lengths: dict[str, np.ndarray]   # events (item, at, weight, purchase), seen, final: per user
    user_arrays: dict[str, bytes]         # each typed array of every user, joined in LRU order

    @property
    def users(self) -> int:
        return len(self.user_ids)


def encode_checkpoint(c: Captured) -> bytes:
    """The checkpoint's body: numpy arrays in an .npz (strings as JSON bytes), read back with allow_pickle=False."""
    arrays: dict[str, Any] = dict(c.arrays)  # Any: numpy's stubs take **kwds for its own keywords
    arrays["meta"] = _json_array(c.meta)
    arrays["items"] = _json_array(c.items)
    arrays["trending"] = c.trending
    arrays["users"] = _json_array(c.user_ids)
    for name, lengths in c.user_lengths.items():
        arrays[f"user_{name}_lengths"] = lengths
    for name, dtype in _USER_ARRAYS:
        arrays[f"user_{name}"] = np.frombuffer(c.user_arrays[name], dtype=dtype)
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **arrays)
    return out.getvalue()


def _json_array(value: Any) -> np.ndarray:
    return np.frombuffer(msgspec.json.encode(value), dtype=np.uint8)


def _decode_json(a: np.ndarray) -> Any:
    if a.dtype != np.uint8:
        raise ValueError("a checkpoint's JSON part is not bytes")
    return msgspec.json.decode(a.tobytes())
