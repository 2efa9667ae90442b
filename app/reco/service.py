"""The online recommendation engine: items, feedback events, lists by strategy, neighbours, retraining."""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import scipy.sparse as sp

from app.config import IngestConfig
from app.errors import InvalidInput, NotFound, RuleViolation
from app.learning.versions import Run, Versioning
from app.reco.canary import Variant, label, place
from app.reco.features import Captured, LiveFeatures, UserState, encode_checkpoint
from app.reco.ports import RecoStore
from app.reco.training import Incumbent, Outcome, train
from app.reco.versions import RecoVersions
from app.runtime.canary import Split
from app.runtime.clock import Clock
from app.runtime.lru import SizedLRU
from ml.reco import kernels
from ml.reco import strategies as st
from ml.reco.interactions import ItemMeta
from ml.reco.ranking import lexicographic, top_n, zscore_rows
from state.models import LIVE
from state.ports import ChangeFeed
from state.reco import Interaction, RecoItem, SavedModel

log = logging.getLogger("contrail.reco")

_STAMP = struct.Struct("<dq")  # a cached list's expiry (time.monotonic) and its user's feature version
_key = msgspec.json.Encoder()
_answer = msgspec.json.Decoder(dict)

DEFAULT_FUTURE_SKEW_S = IngestConfig().max_future_skew_s  # ingest.max_future_skew_s unless configured otherwise
STRATEGIES = ("personalized", "cf", "content_based", "frequently_bought_together", "trending", "new_arrivals")
# Strategies whose list does not depend on the user's history: an unknown user gets them as asked, not popular items.
ANYONES = frozenset({"trending", "new_arrivals"})
FEEDBACK = ("product_view", "click", "wishlist_add", "cart_add", "purchase", "dismiss")
FEEDBACK_NOTICE = "feedback"  # the change notices that carry feedback events whole (append-only facts)
ITEM_NOTICE = "reco_item"  # the change notices naming items another node stored
LIST_OVERHEAD = 150  # bytes a cached list costs beyond its key and JSON (two bytes objects and the LRU's entry)
REBUILD_PAGE = 10_000  # interactions read per round trip when the features are rebuilt at start
TRAINING_PAGE = 10_000  # interactions read per round trip for a training
_encode_row = msgspec.json.Encoder().encode
_decode_row = msgspec.json.Decoder(Interaction).decode


@dataclass(frozen=True, slots=True)
class ModelSwapped:
    """A retrained recommendation model went live."""
    version: str
    hr_at_10: float
    ndcg_at_10: float


@dataclass(frozen=True, slots=True)
class Feedback:
    """One feedback event as reco takes it: who, which item, what kind, when (event time)."""
    user_id: str
    item_id: str
    kind: str
    at: float


@dataclass(frozen=True, slots=True)
class _SnapshotArrays:
    """What the compiled path reads from one features snapshot, in the dtypes its loops take."""
    model: st.RecoModel
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    divisor: np.ndarray  # popularity^debias
    popularity_z: np.ndarray
    recency_z: np.ndarray
    unit: np.ndarray  # (items, factors) float32 unit embeddings; no columns without embeddings


def model_config(c: Any) -> st.RecoConfig:
    """ml/reco's config from the `[reco]` section."""
    return st.RecoConfig(coview_window=c.coview_window, coview_ttl_s=c.coview_ttl_s, recent_n=c.recent_n,
                         popularity_half_life_s=c.popularity_half_life_s, trending_window_s=c.trending_window_s,
                         factors=c.factors)


class RecoService:
    def __init__(self, config: Any, store: RecoStore, clock: Clock, metrics: Any, publish: Callable[[Any], Any],
                 changes: ChangeFeed | None = None, versioning: Versioning | None = None,
                 max_future_skew_s: float = DEFAULT_FUTURE_SKEW_S) -> None:
        self._config = config
        # How far ahead of the clock an item's created_at may be: ingest's allowance for an event's `at`.
        self.max_future_skew_s = max_future_skew_s
        # Several nodes: the feedback each records is told to the others, whose features learn from it too.
        self._changes = changes
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._publish = publish
        self.features = LiveFeatures(model_config(config), config.recent_ttl_s, config.max_users)
        # key -> _STAMP + the list's JSON; bounded by bytes too: a key carries the request's exclude= and category=
        self.lists: SizedLRU[bytes, bytes] = SizedLRU(config.cache_bytes, config.cache_entries, "reco_lists",
                                                      lambda key, value: len(key) + len(value) + LIST_OVERHEAD)
        self.weights: tuple[float, ...] = st.SEED_WEIGHTS
        self.learned = False
        self.fast = True  # personalized and cf lists by the fast path (False: the plain one, its reference)
        self._arrays_held: tuple[_SnapshotArrays, ...] = ()  # the live snapshot's, and a canary's
        self.saved: SavedModel | None = None  # the live trained model (None: the seed)
        self.canary: Split[SavedModel | None] | None = None  # a canary version beside it, for a share of users
        self._variant: Variant | None = None  # the canary as lists are scored with it
        # Registered versions (the app): each trained model is recorded, served live or sent out as a canary.
        # Without (a service on its own), a model that evaluated well goes live.
        self.versions = RecoVersions(self, store, versioning, clock, metrics) if versioning is not None else None
        self.trained = 0
        self.last_evaluation: dict[str, Any] | None = None
        self._training: asyncio.Lock = asyncio.Lock()
        self._weights_of = {"product_view": config.weight_view, "click": config.weight_click,
                            "wishlist_add": config.weight_wishlist, "cart_add": config.weight_cart,
                            "purchase": config.weight_purchase, "dismiss": config.weight_dismiss}
        # What a checkpoint covers. The features are exactly those of every stored interaction up to id
        # `_covered`, plus the `_written` rows this node stored (and applied) since; `_in_flight` records are
        # between their write and their apply. A checkpoint closes `_gate` (records wait before they write),
        # waits for none to be in flight and counts the rows stored after `_covered`: when they are all this
        # node's, the features are exactly the log up to the newest id.
        self._covered = 0
        self._written = 0
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._gate = asyncio.Event()
        self._gate.set()
        self._checkpointing = asyncio.Lock()
        self._checkpoints_off: str | None = None  # why this node takes no more checkpoints (until a restart)
        self._checkpointed = -1  # what the latest stored checkpoint covers (-1: none)

    async def load(self) -> None:
        """Rebuild the features from the stored items and interactions (from the latest checkpoint, and the
        interactions stored after it), and serve the last model that went live."""
        started = time.perf_counter()
        items = await self._store.items()
        after = 0
        checkpoint = await self._store.latest_checkpoint()
        if checkpoint is not None:
            covered, taken_at, body = checkpoint
            try:
                self.features.restore(body, covered)
                after = self._checkpointed = covered
            except Exception as exc:  # unreadable, or made with other settings: the whole log, as without one
                log.warning("reco features checkpoint not restored; replaying every stored interaction",
                            extra={"covered": covered, "taken_at": taken_at, "error": repr(exc)[:500]})
        restored = time.perf_counter() - started
        for item in items:  # after the checkpoint's items: those registered since are appended
            self.features.put_item(item)
        tail = 0
        while True:  # a page at a time: no buffer of the whole log beside the features
            after, page = await self._store.interactions_after(after, REBUILD_PAGE)
            if not page:
                break
            await self._replay(page)
            tail += len(page)
        self._covered, self._written = after, 0
        log.info("reco features loaded", extra={"checkpoint": self._checkpointed >= 0, "replayed": tail,
                                                "events": self.features.sequence, "last_id": after,
                                                "checkpoint_s": round(restored, 3),
                                                "seconds": round(time.perf_counter() - started, 3)})
        self.serve(await self._store.latest_model())

    async def _replay(self, page: list[tuple[int, Interaction]]) -> None:
        """A page of the stored log applied in order, as it was applied live: a user the memory does not hold but who
        has earlier stored events (left out of the checkpoint, or forgotten by the LRU during the replay) is first
        restored as they stood before the event, as `record` restores them, so their exclusions and co-view
        pairs are the live ones."""
        users = self.features.users
        absent = list(dict.fromkeys(r.user_id for _, r in page if r.user_id not in users))
        # With no checkpoint and nobody forgotten yet, a user not held has no earlier events: nothing to read.
        earlier = set(await self._store.known_users(absent, page[0][0])) \
            if absent and (self._checkpointed >= 0 or users.evictions) else set()
        in_page: set[str] = set()
        for row_id, row in page:
            user_id = row.user_id
            if user_id not in users and (user_id in earlier or user_id in in_page):
                n = self.features.events_per_user
                self.features.restore_user(user_id, await self._store.user_interactions(user_id, n, row_id),
                                           await self._store.user_items(user_id, row_id),
                                           await self._store.user_final_items(user_id, row_id))
            self.features.apply(row)
            in_page.add(user_id)

    async def checkpoint(self) -> str:
        """Store the features as they are (the periodic `reco_checkpoint` task), so that a start replays only
        what was stored after. "stored", "unchanged" (nothing new since the last), or "skipped" (this node cannot
        tell exactly which interactions its features hold: it then takes none until it restarts)."""
        if self._changes is not None:
            return self._skip("several nodes: the features hold other nodes' feedback in the order heard, not by id")
        if self._checkpoints_off is not None:
            return self._skip(self._checkpoints_off)
        async with self._checkpointing:
            started = time.perf_counter()
            self._gate.clear()  # records wait before they write ...
            copying: asyncio.Future[Captured] | None = None
            try:
                while self._in_flight:  # ... and those written apply
                    await self._idle.wait()
                count, last = await self._store.interactions_since(self._covered)
                if count != self._written:
                    return self._skip(f"{count} interactions stored after id {self._covered}, {self._written} of "
                                      "them by this node: another writer shares the log")
                covered = last if last is not None else self._covered
                if covered in (0, self._checkpointed):  # nothing stored yet, or nothing since the last
                    self._metrics.reco_checkpoints.labels("unchanged").inc()
                    return "unchanged"
                on_loop = time.perf_counter()
                frozen = self.features.capture(covered)
                self._covered, self._written = covered, 0
                self._metrics.reco_checkpoint_seconds.labels("loop").observe(time.perf_counter() - on_loop)
                # The users' arrays are copied in a thread while records still wait (nothing else changes them).
                copying = asyncio.ensure_future(asyncio.to_thread(frozen.copy))
                captured = await asyncio.shield(copying)
            finally:
                if copying is not None and not copying.done():  # cancelled: the thread still reads the arrays
                    copying.add_done_callback(lambda _: self._gate.set())
                else:
                    self._gate.set()
            self._metrics.reco_checkpoint_seconds.labels("held").observe(time.perf_counter() - started)
            body = await asyncio.to_thread(encode_checkpoint, captured)
            await self._store.save_checkpoint(covered, self._clock.now(), body)
            self._checkpointed = covered
            seconds = time.perf_counter() - started
            self._metrics.reco_checkpoint_seconds.labels("total").observe(seconds)
            self._metrics.reco_checkpoint_bytes.set(len(body))
            self._metrics.reco_checkpoints.labels("stored").inc()
            log.info("reco features checkpoint stored", extra={"covered": covered, "events": captured.meta["sequence"],
                                                               "users": captured.users, "bytes": len(body),
                                                               "seconds": round(seconds, 3)})
            return "stored"

    def _skip(self, reason: str) -> str:
        if self._checkpoints_off is None:
            self._checkpoints_off = reason
            log.warning("reco features checkpoints off until a restart", extra={"reason": reason})
        self._metrics.reco_checkpoints.labels("skipped").inc()
        return "skipped"

    def serve(self, saved: SavedModel | None) -> None:
        """A stored model live (None: the seed): its item embeddings placed by item id, its blend weights."""
        f = self.features
        self.saved = saved
        self.lists.clear()
        self._metrics.reco_model.clear()
        for metric in ("hr@10", "ndcg@10"):  # the seed was never trained, so never evaluated: no serving series
            self._metrics.reco_evaluation.remove(metric, "serving")
        if saved is None:
            f.set_embeddings(None, "")
            self.weights, self.learned = st.SEED_WEIGHTS, False
            self._metrics.reco_model.labels("seed", "seed").set(1)  # no trained version: features, seed weights
            return
        f.set_embeddings(place(saved, f.items.index, len(f.items)), saved.version)
        self.trained = max(self.trained, saved.sequence)
        self.weights, self.learned = tuple(saved.weights), saved.learned
        self.last_evaluation = dict(saved.evaluation) if saved.evaluation is not None else None
        self._show_evaluation(saved, "serving")
        self._metrics.reco_model.labels(saved.version, "learned" if self.learned else "seed").set(1)

    def serve_canary(self, split: Split[SavedModel | None] | None) -> None:
        """Serve `split`'s version to the users it takes, beside the live one (None: the live one to everyone)."""
        f = self.features
        self._variant = Variant(split.model, f.items.index, len(f.items)) if split is not None else None
        self.canary = split
        if split is not None:  # the version on trial, also after a restart
            self._show_evaluation(split.model, "candidate")

    def _show_evaluation(self, saved: SavedModel | None, model: str) -> None:
        """contrail_reco_evaluation{model=...}: a version's figures as evaluated when it was trained, the same on
        every node and across restarts."""
        for metric in ("hr@10", "ndcg@10"):
            if saved is not None and saved.evaluation is not None and metric in saved.evaluation:
                self._metrics.reco_evaluation.labels(metric, model).set(saved.evaluation[metric])

    @property
    def model_name(self) -> str:
        return label(self.features.version, self.learned)

    # ---- items ----
    def _admitted(self, rows: list[Interaction]) -> list[Interaction]:
        """The rows whose item is known, or new while there is room for it under reco.max_items: any product id in
        feedback becomes an item, so the items (and the arrays and matrices sized by them) are bounded here. The
        rest are dropped and counted."""
        index, room = self.features.items.index, self._config.max_items - len(self.features.items)
        kept: list[Interaction] = []
        new: set[str] = set()
        for r in rows:
            if r.item_id in index or r.item_id in new:
                kept.append(r)
            elif room > 0:
                new.add(r.item_id)
                room -= 1
                kept.append(r)
        if len(kept) < len(rows):
            self._metrics.reco_events_dropped.labels("item_limit").inc(len(rows) - len(kept))
        return kept

    async def put_items(self, items: list[RecoItem], *, one: bool = False) -> list[RecoItem]:
        """Create or replace the items, all or none. `one`: the item of a request for one item, whose errors name
        its fields rather than its place in a list."""
        if len({i.item_id for i in items}) != len(items):
            raise InvalidInput("each item_id may appear once per request")
        now = self._clock.now()
        for n, item in enumerate(items):
            if item.created_at is not None and item.created_at > now + self.max_future_skew_s:
                # An item "new" until its future date would head every new_arrivals list until then.
                field = "created_at" if one else f"[{n}].created_at"
                raise RuleViolation(f"{'' if one else f'item {n} ({item.item_id}): '}created_at is "
                                    f"{item.created_at - now:.0f} s in the future; at most "
                                    f"{self.max_future_skew_s:g} s is allowed (ingest.max_future_skew_s)",
                                    {"field": field, "item_id": item.item_id, "created_at": item.created_at,
                                     "now": now}, code="future_item")
        new = sum(1 for i in items if i.item_id not in self.features.items.index)
        if len(self.features.items) + new > self._config.max_items:
            raise InvalidInput(f"there is room for {max(0, self._config.max_items - len(self.features.items))} more "
                               f"items (reco.max_items is {self._config.max_items}); this request adds {new}")
        await self._store.put_items(items)
        for item in items:
            self.features.put_item(item)
        self.lists.clear()
        if self._changes is not None:
            self._changes.changed(ITEM_NOTICE, [i.item_id for i in items])
        return items

    async def apply_items(self, item_ids: list[str]) -> None:
        """Items another node stored (created, changed or hidden): read back, so this node lists them alike."""
        items = await self._store.items_named(item_ids)
        for item in items:
            self.features.put_item(item)
        if items:
            self.lists.clear()

    def item(self, item_id: str) -> RecoItem:
        item = self.features.items.meta.get(item_id)
        if item is None:
            if item_id not in self.features.items.index:
                raise NotFound(f"no item {item_id}")
            item = RecoItem(item_id)
        return item

    # ---- events ----
    def weight(self, kind: str) -> float:
        return float(self._weights_of[kind])

    async def record(self, events: Iterable[Feedback], arrived: float | None = None) -> int:
        """Store the feedback events (durably) and apply them to the features at once. `arrived`
        (time.perf_counter()) is when they were accepted, where the feature-update lag starts."""
        started = time.perf_counter() if arrived is None else arrived
        rows = self._admitted([Interaction(e.user_id, e.item_id, e.kind, self.weight(e.kind), e.at) for e in events
                               if e.kind in self._weights_of])
        if not rows:
            return 0
        missing = list(dict.fromkeys(r.user_id for r in rows if r.user_id not in self.features.users))
        for user_id in await self._store.known_users(missing) if missing else ():
            await self._restore(user_id)  # forgotten by the LRU: their history comes back before the new events
        while not self._gate.is_set():  # a checkpoint is being taken (milliseconds)
            await self._gate.wait()
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._store.add_interactions(rows)
            self._written += len(rows)  # not on a failure: rows stored all the same would stop checkpoints
            for r in rows:
                self.features.apply(r)
                self._metrics.reco_events.labels(r.kind).inc()
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
        self._metrics.reco_update_seconds.observe(time.perf_counter() - started)
        if self._changes is not None:
            self._changes.changed(FEEDBACK_NOTICE, [_encode_row(r).decode() for r in rows])
        return len(rows)

    async def apply_remote(self, encoded: list[str]) -> None:
        """Feedback another node recorded (and stored): applied to this node's features as if heard here. A
        user this node does not hold is restored from the store first, without these events (they are stored
        already, and are applied below)."""
        rows = self._admitted([_decode_row(e) for e in encoded])
        incoming = collections.Counter(rows)
        missing = list(dict.fromkeys(r.user_id for r in rows if r.user_id not in self.features.users))
        for user_id in await self._store.known_users(missing) if missing else ():
            theirs = sum(n for r, n in incoming.items() if r.user_id == user_id)
            history = await self._store.user_interactions(user_id, self.features.events_per_user + theirs)
            left = collections.Counter({r: n for r, n in incoming.items() if r.user_id == user_id})
            before = []
            for row in history:
                if left[row]:
                    left[row] -= 1
                else:
                    before.append(row)
            self.features.restore_user(user_id, before[-self.features.events_per_user:],
                                       await self._store.user_items(user_id),
                                       await self._store.user_final_items(user_id))
        for r in rows:
            self.features.apply(r)
            self._metrics.reco_events.labels(r.kind).inc()

    async def _restore(self, user_id: str) -> UserState | None:
        """A user the memory forgot (or never held since start): their state from the store, if any."""
        history = await self._store.user_interactions(user_id, self.features.events_per_user)
        if not history:
            return None
        seen = await self._store.user_items(user_id)
        final = await self._store.user_final_items(user_id)
        return self.features.restore_user(user_id, history, seen, final)

    async def on_order_paid(self, user_id: str, item_ids: list[str], at: float) -> None:
        """A paid order's destination and products become the customer's purchases."""
        await self.record(Feedback(user_id, i, "purchase", at) for i in item_ids)

    async def activity(self, user_id: str, limit: int) -> dict:
        """A user's latest `limit` events from the store, newest first, each saying whether it counts in their lists
        now (among the last `recent_n` and within `recent_ttl_s` of event time), and what they bought or dismissed."""
        history = await self._store.user_interactions(user_id, max(limit, self._config.recent_n))
        final = await self._store.user_final_items(user_id) if history else []
        ttl, recent_n, now = self._config.recent_ttl_s, self._config.recent_n, self.features.now
        events = [{"item_id": r.item_id, "kind": r.kind, "at": r.at, "weight": r.weight,
                   "counts": k < recent_n and (ttl <= 0 or now - r.at <= ttl)}
                  for k, r in enumerate(reversed(history))]
        return {"user_id": user_id, "known": bool(history), "events": events[:limit], "bought_or_dismissed": final}

    # ---- lists ----
    async def recommend(self, user_id: str, strategy: str = "personalized", n: int = 10,
                        categories: list[str] | None = None, exclude: list[str] | None = None,
                        include_bought: bool = False) -> dict:
        """`{"user_id", "strategy", "model", "items": [{"item_id", "score", "reason"}]}`."""
        return _answer.decode(await self.recommend_json(user_id, strategy, n, categories, exclude, include_bought))

    async def recommend_json(self, user_id: str, strategy: str = "personalized", n: int = 10,
                             categories: list[str] | None = None, exclude: list[str] | None = None,
                             include_bought: bool = False) -> bytes:
        """The list as JSON, the form it is cached in (what the REST edge sends as it is). With `include_bought`,
        what the user bought may be listed again (a bag, a lounge pass); what they dismissed never is."""
        started = time.perf_counter()
        if strategy not in STRATEGIES:
            raise InvalidInput(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
        self._check_n(n)
        state = self.features.users.get(user_id)
        if state is None:
            state = await self._restore(user_id)
        # Key and value are bytes, which the garbage collector never walks: as Python objects, each young collection
        # walked the lists cached since the last one and promoted them to the older generation, and those passes
        # (about 2 and 22 ms with the cache filling at 2,600 lists a second) were the p99 of uncached lists.
        canary, variant = self.canary, None
        if canary is not None and strategy == "personalized" and canary.takes(user_id):
            variant = self._variant  # one user sees one version for the canary's whole period
        key = _key.encode((user_id, strategy, n, categories or (), exclude or (), include_bought,
                           self.features.version if variant is None else variant.name))
        ttl = self._config.cache_ttl_s
        now = self._clock.now()  # the platform clock: expiry is testable, and moves with it
        version = state.version if state is not None else -1
        cached = self.lists.get(key) if ttl > 0 else None
        if cached is not None:
            expires, cached_version = _STAMP.unpack_from(cached)
            if expires <= now or cached_version != version:
                cached = None
        if cached is not None:
            self._metrics.reco_cache.labels("hit").inc()
            body = cached[_STAMP.size:]
        else:
            self._metrics.reco_cache.labels("miss").inc()
            kept_out: set[int] | None = None  # of the bought or dismissed, those to leave out (None: all of them)
            if include_bought and state is not None and len(state.final):
                index = self.features.items.index
                kept_out = {index[i] for i in await self._store.user_dismissed_items(user_id) if i in index}
            answer: dict | None = None
            if canary is None or strategy != "personalized":
                answer = self._recommend(user_id, state, strategy, n, categories, exclude, None, kept_out)
            else:  # by the version the user falls to, each timed alike; what the canary fails, the live one makes
                def make(v: Variant | None) -> dict:
                    return self._recommend(user_id, state, strategy, n, categories, exclude, v, kept_out)
                if variant is not None:
                    answer = canary.by_canary(lambda: make(variant))
                if answer is None:
                    answer = canary.by_live(lambda: make(None))
            body = _key.encode(answer)
            if ttl > 0:
                self.lists.put(key, _STAMP.pack(now + ttl, version) + body)
        self._metrics.reco_requests.labels(strategy).inc()
        self._metrics.reco_latency.labels(strategy).observe(time.perf_counter() - started)
        return body

    def _check_n(self, n: int) -> None:
        if not 1 <= n <= self._config.max_n:
            raise InvalidInput(f"n must be 1 to {self._config.max_n}", {"field": "n"})

    def _allowed(self, categories: list[str] | None) -> np.ndarray:
        allowed = ~self.features.hidden()
        if categories:
            allowed &= self.features.in_categories(set(categories))
        return allowed

    def _recommend(self, user_id: str, state: UserState | None, strategy: str, n: int,
                   categories: list[str] | None, exclude: list[str] | None, variant: Variant | None = None,
                   kept_out: set[int] | None = None) -> dict:
        f = self.features
        model = f.model() if variant is None else variant.model(f.model())
        weights = self.weights if variant is None else variant.weights
        allowed = self._allowed(categories)
        excluded = (set(state.final) if kept_out is None else kept_out) if state is not None else set()
        for token in exclude or ():
            if token == "seen":
                excluded.update(state.seen if state is not None else ())
            elif token in f.items.index:
                excluded.add(f.items.index[token])
        if excluded:
            allowed[list(excluded)] = False
        reasons_of: Callable[[list[int]], list[str]]
        if state is None and strategy not in ANYONES:  # an unknown user: popular in the categories asked for
            picked, values = self._popular_top(model, n, allowed)
            reasons_of = lambda picked: [self._popular_reason(i) for i in picked]  # noqa: E731
        elif self.fast and strategy in ("personalized", "cf") and state is not None:
            recent = f.recent_row(state)
            top, vals = kernels.top_n(self._fast_scores(strategy, model, recent, weights), allowed, n)
            picked, values = top.tolist(), vals.tolist()
            reasons_of = lambda picked: self._fast_reasons(strategy, model, recent, picked)  # noqa: E731
        else:
            ctx = f.context(state)
            if strategy == "personalized":
                scores = st.personalized(model, ctx, weights)
            elif strategy == "content_based" and model.features is None:
                raise RuleViolation("content_based needs item features (category, tags or features); no item has any")
            else:
                scores = st.STRATEGIES[strategy](model, ctx)
            scores = np.array(scores[0], dtype=np.float64)
            scores[~allowed] = -np.inf
            top2, vals2 = top_n(scores, n)
            picked = [int(i) for i in top2[0] if i >= 0]
            values = [float(v) for v, i in zip(vals2[0], top2[0], strict=True) if i >= 0]
            reasons_of = lambda picked: self._reasons(strategy, model, ctx, picked)  # noqa: E731
        explore = self._config.explore_items if n > 1 else 0  # every strategy: not everyone the same list
        explore = min(explore, n - 1)
        reasons = reasons_of(picked)
        if explore and len(picked) >= n:
            seed = np.uint64(zlib.crc32(user_id.encode()) ^ int(model.now // 3600))  # a new draw every hour
            extra = kernels.explore(allowed, np.array(picked[:n - explore], dtype=np.int64), seed, explore).tolist()
            if extra:
                keep = n - len(extra)
                floor = values[keep - 1] if keep else 0.0
                picked = picked[:keep] + extra
                values = values[:keep] + [floor] * len(extra)
                reasons = reasons[:keep] + ["explore: something different"] * len(extra)
        name = "popular" if state is None and strategy not in ANYONES else \
            (self.model_name if variant is None else variant.name) if strategy == "personalized" else \
            (f.version or "features")
        ids = f.items.ids
        return {"user_id": user_id, "strategy": strategy, "model": name,
                "items": [{"item_id": ids[i], "score": round(v, 6), "reason": r}
                          for i, v, r in zip(picked, values, reasons, strict=True)]}

    # ---- the fast path of personalized and cf lists ----
    # One user's list by the compiled loops of ml/reco/kernels.py on the snapshot's arrays (kept per snapshot),
    # without sparse matrices. `fast = False` serves the plain path of ml/reco/strategies.py, which
    # tests/unit/app/reco/test_fast_path.py compares it with.

    def _arrays(self, model: st.RecoModel) -> _SnapshotArrays:
        for cached in self._arrays_held:
            if cached.model is model:
                return cached
        coview = model.coview
        constant = zscore_rows(np.stack([model.decayed_popularity, st.item_recency(model)]))
        emb = model.embeddings
        unit = np.zeros((model.n_items, 0), np.float32) if emb is None else emb.unit
        cached = _SnapshotArrays(model, np.ascontiguousarray(coview.indptr, dtype=np.int64),
                                 np.ascontiguousarray(coview.indices, dtype=np.int32),
                                 np.ascontiguousarray(coview.data, dtype=np.float32),  # the counts, as kept
                                 np.maximum(model.popularity, 1.0) ** model.config.debias,
                                 np.ascontiguousarray(constant[0]), np.ascontiguousarray(constant[1]),
                                 np.ascontiguousarray(unit, dtype=np.float32))
        # The newest two: the live version's snapshot and, while a canary runs, the canary's.
        self._arrays_held = (cached, *self._arrays_held[:1])
        return cached

    def _fast_scores(self, strategy: str, model: st.RecoModel, recent: tuple[np.ndarray, np.ndarray],
                     blend: tuple[float, ...] | None = None) -> np.ndarray:
        a = self._arrays(model)
        items, weights = recent
        coview = kernels.coview_row(a.indptr, a.indices, a.data, items, weights, a.divisor)
        if strategy == "cf":
            return lexicographic(coview, model.popularity)
        return kernels.blend(coview, items, weights, a.unit, a.popularity_z, a.recency_z,
                             np.asarray(self.weights if blend is None else blend, dtype=np.float64))

    def _fast_reasons(self, strategy: str, model: st.RecoModel, recent: tuple[np.ndarray, np.ndarray],
                      items: list[int]) -> list[str]:
        if not items:
            return []
        a = self._arrays(model)
        anchors, weights = recent
        unit = a.unit if strategy == "personalized" else a.unit[:, :0]
        strongest, similar = kernels.anchors(a.indptr, a.indices, a.data, anchors, weights,
                                             np.array(items, dtype=np.int64), np.ascontiguousarray(unit))
        ids = self.features.items.ids
        return [f"co-viewed with {ids[a]}" if a >= 0 else f"similar to {ids[b]}" if b >= 0
                else self._popular_reason(i) for i, a, b in zip(items, strongest.tolist(), similar.tolist(),
                                                                strict=True)]

    def _popular_reason(self, i: int) -> str:
        category = self.features.items.category(i)
        return f"popular in {category}" if category else "popular"

    def _reasons(self, strategy: str, model: st.RecoModel, ctx: st.UserContext, items: list[int]) -> list[str]:
        ids = self.features.items.ids
        if not items:
            return []
        arr = np.array(items)
        if strategy in ("cf", "personalized"):
            anchors = st.strongest_anchor(ctx, model.coview, 0, arr)
            similar = np.full(len(items), -1)
            recent = ctx.recent[0]
            if strategy == "personalized" and model.embeddings is not None and recent.nnz:
                # No co-view behind it: name the recent item whose embedding is closest, when it is close.
                unit = model.embeddings.unit
                cos = np.where((recent.data > 0)[:, None], unit[recent.indices] @ unit[arr].T, -1.0)
                similar = np.where(cos.max(axis=0) > 0.5, recent.indices[cos.argmax(axis=0)], -1)
            return [f"co-viewed with {ids[a]}" if a >= 0 else f"similar to {ids[b]}" if b >= 0
                    else self._popular_reason(i) for i, a, b in zip(items, anchors, similar, strict=True)]
        if strategy == "frequently_bought_together":
            bought = st.UserContext(ctx.purchases, ctx.purchases, ctx.seen, ctx.bought_or_dismissed)
            anchors = st.strongest_anchor(bought, model.bought_together, 0, arr)
            return [f"bought together with {ids[a]}" if a >= 0 else self._popular_reason(i)
                    for i, a in zip(items, anchors, strict=True)]
        if strategy == "trending":
            return [f"trending in {c}" if (c := self.features.items.category(i)) else "trending" for i in items]
        if strategy == "new_arrivals":
            return ["new"] * len(items)
        return [f"matches your interest in {c}" if (c := self.features.items.category(i)) else "like your recent items"
                for i in items]

    def _popular_top(self, model: st.RecoModel, n: int, allowed: np.ndarray) -> tuple[list[int], list[float]]:
        """The n most popular allowed items (ties by all-time popularity) and their decayed popularity."""
        scores = lexicographic(model.decayed_popularity, model.popularity).astype(np.float64)
        scores[~allowed] = -np.inf
        top, _ = top_n(scores, n)
        picked = [int(i) for i in top[0] if i >= 0]
        return picked, [float(model.decayed_popularity[i]) for i in picked]

    def _popular(self, model: st.RecoModel, n: int, categories: list[str] | None) -> list[dict]:
        picked, values = self._popular_top(model, n, self._allowed(categories))
        return [{"item_id": self.features.items.ids[i], "score": round(v, 6), "reason": self._popular_reason(i)}
                for i, v in zip(picked, values, strict=True)]

    def popular(self, n: int = 10, categories: list[str] | None = None) -> dict:
        self._check_n(n)
        started = time.perf_counter()
        items = self._popular(self.features.model(), n, categories)
        self._metrics.reco_requests.labels("popular").inc()
        self._metrics.reco_latency.labels("popular").observe(time.perf_counter() - started)
        return {"strategy": "popular", "items": items}

    def similar(self, item_id: str, n: int = 10) -> dict:
        """The item's nearest neighbours: by the trained embeddings, else by co-view counts."""
        self._check_n(n)
        f = self.features
        i = f.items.index.get(item_id)
        if i is None:
            raise NotFound(f"no item {item_id}")
        model = f.model()
        hidden = f.hidden()
        # An item the embeddings do not cover (first seen after the training) has a zero row: its co-views then.
        if model.embeddings is not None and model.embeddings.unit[i].any():
            sims = model.embeddings.unit[[i]] @ model.embeddings.unit.T
            sims[0, ~model.embeddings.unit.any(axis=1)] = -np.inf  # nor is such an item anyone's neighbour
            source, reason = "embeddings", f"similar to {item_id}"
        else:
            sims = np.asarray(sp.csr_matrix(model.coview[i]).todense(), dtype=np.float64)
            sims = np.where(sims > 0, sims, -np.inf)
            source, reason = "coview", f"co-viewed with {item_id}"
        sims = np.array(sims, dtype=np.float64)
        sims[0, i] = -np.inf
        sims[0, hidden] = -np.inf
        top, vals = top_n(sims, n)
        return {"item_id": item_id, "source": source, "model": f.version or "features",
                "items": [{"item_id": f.items.ids[j], "score": round(float(v), 6), "reason": reason}
                          for j, v in zip(top[0], vals[0], strict=True) if j >= 0]}

    # ---- training ----
    def _meta(self) -> ItemMeta:
        n = len(self.features.items)
        created = np.full(n, np.nan)
        for item_id, item in self.features.items.meta.items():
            if item.created_at is not None:
                created[self.features.items.index[item_id]] = item.created_at
        return ItemMeta(created_at=created, features=self.features._item_features())

    async def train(self, actor: Any = "learning") -> dict:
        """Retrain from the stored interactions in a worker thread; when it evaluated as good as what serves, swap
        it in (or, with canary.on_retrain, send it out as a canary)."""
        async with self._training:
            rows = await self._latest(self._config.training_max_events)
            f = self.features
            index, n_items, meta = dict(f.items.index), len(f.items), self._meta()
            incumbent = Incumbent(f.embeddings, self.weights, self.learned,
                                  self.saved.data_through if self.saved is not None else None)
            started, at = time.perf_counter(), self._clock.now()
            outcome: Outcome = await asyncio.to_thread(train, rows, index, n_items, meta, f.config, incumbent,
                                                       self._config.min_training_events)
            version, status, reason = f.version, "live" if outcome.live else "kept_out", outcome.reason
            evaluation = {"hr@10": round(outcome.candidate[0], 6), "ndcg@10": round(outcome.candidate[1], 6),
                          "serving_hr@10": round(outcome.incumbent[0], 6),
                          "serving_ndcg@10": round(outcome.incumbent[1], 6),
                          "users": outcome.users_evaluated, "events": outcome.events}
            if outcome.live:
                emb = outcome.embeddings
                assert emb is not None  # a live outcome carries the embeddings it trained
                sequence = self.trained + 1 if self.versions is None else await self.versions.next_sequence()
                saved = SavedModel(sequence, emb.kind, self._clock.now(), f.items.ids[:n_items],
                                   np.ascontiguousarray(emb.item_factors, dtype=np.float32).tobytes(),
                                   emb.item_factors.shape[1], list(outcome.weights), outcome.learned, evaluation,
                                   outcome.data_through)
                version = saved.version
                if self.versions is None:
                    await self._store.save_model(saved)  # stored first: what serves is what a restart serves
                    self.serve(saved)  # the swap: one assignment, on the loop
                else:  # stored, registered, and served live or as a canary
                    recorded = await self.versions.offer(saved, sequence, version, {
                        "evaluation": evaluation, "weights": list(outcome.weights),
                        "weights_kind": "learned" if outcome.learned else "seed"}, reason)
                    if recorded.status != LIVE:
                        status = "canary" if recorded.canary is not None else "recorded"
                        reason = recorded.note if status == "recorded" else (
                            f"{reason}; serving {self._variant_share():.0%} of users as a canary")
                if status == "live":
                    await self._publish(ModelSwapped(version, outcome.candidate[0], outcome.candidate[1]))
            self._metrics.reco_trainings.labels(status).inc()
            if outcome.users_evaluated:
                self.last_evaluation = evaluation
                for metric in ("hr@10", "ndcg@10"):  # serving's changes when a version goes live (serve)
                    self._metrics.reco_evaluation.labels(metric, "candidate").set(evaluation[metric])
            seconds = time.perf_counter() - started
            log.info("reco model trained", extra={"live": status == "live", "status": status, "version": version,
                                                  **evaluation})
            if self.versions is not None:
                run_status = {"live": "promoted", "kept_out": "rejected" if outcome.users_evaluated else "skipped"}
                await self.versions.report(Run("reco", run_status.get(status, status), reason, at, seconds,
                                               outcome.events, outcome.users_evaluated,
                                               version if outcome.live else None,
                                               {"hr@10": evaluation["hr@10"], "ndcg@10": evaluation["ndcg@10"]},
                                               {"hr@10": evaluation["serving_hr@10"],
                                                "ndcg@10": evaluation["serving_ndcg@10"]}), actor)
            return {"live": status == "live", "status": status, "reason": reason, "model": self.model_name,
                    "version": version, "weights": list(outcome.weights),
                    "weights_kind": "learned" if outcome.learned else "seed", "evaluation": evaluation,
                    "seconds": round(seconds, 3)}

    async def _latest(self, limit: int) -> list[Interaction]:
        """The latest `limit` stored interactions in arrival order, read newest page first."""
        pages: list[list[Interaction]] = []
        before, left = None, limit
        while left > 0:
            before, page = await self._store.interactions_before(before, min(left, TRAINING_PAGE))
            if not page:
                break
            pages.append(page)
            left -= len(page)
        return [r for page in reversed(pages) for r in page]

    def _variant_share(self) -> float:
        return self.canary.share if self.canary is not None else 0.0

    async def retrain(self) -> None:
        """The periodic retrain under the supervisor (too little data is an outcome, not an error)."""
        await self.train()


def reader_or_staff(principal: Any, user_id: str) -> None:
    """Customers see their own recommendations; admins and partner systems anyone's."""
    if principal.role in ("admin", "partner") or (principal.role == "customer" and principal.id == user_id):
        return
    from app.errors import Forbidden
    raise Forbidden("customers can only see their own recommendations") if principal.role == "customer" \
        else Forbidden("needs a customer token for this user, or an admin or partner key")
