"""Inference batching: many scoring calls, one provider pass.

A batch is flushed when `max_batch` calls are waiting or the oldest has waited
`max_wait_us`. asyncio timers are millisecond-grained, so the sub-millisecond window is
built on loop ticks: while calls wait, a callback re-schedules itself with call_soon and
checks the clock on every tick of the loop (other ready work runs between ticks). A queue
bound and a per-call timeout turn overload into counted refusals, never unbounded latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from ml.model import SpikingNet
from ml.providers import Provider


class Overloaded(Exception):
    """The scoring queue is full."""


class ScoringTimeout(Exception):
    """A scoring call waited longer than its timeout."""


class Batcher:
    def __init__(self, provider: Provider, model: Callable[[], SpikingNet], *, max_batch: int = 16,
                 max_wait_us: int = 500, max_queue: int = 1024, timeout_ms: float = 5.0,
                 on_batch: Callable[[int, int, float], None] | None = None,
                 settle: Callable[[list, np.ndarray, np.ndarray, np.ndarray, list[int]], list] | None = None) -> None:
        self.provider = provider
        self._model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_us / 1e6
        self.max_queue = max_queue
        self.timeout = timeout_ms / 1000
        self._on_batch = on_batch
        # settle(terms, score, ctr, bid factor, sizes) -> one result per call: what the caller does with
        # its scores, done for the whole batch at once. Without it a call gets its (score, ctr, bid) slices.
        self._settle = settle
        # scorer(provider, users, cands): set only while a canary model version runs beside the live one, to score
        # some batches with it (app/bidding/models.py); None costs the batch one check.
        self.scorer: Callable[[Provider, np.ndarray, list[np.ndarray]], tuple[np.ndarray, ...]] | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray, asyncio.Future, float, object]] = []
        self._first_at = 0.0
        self._flush_at = 0.0  # the window's end, or sooner when a waiting call's deadline comes first
        self._ticking = False
        self.overloaded = 0
        self.timeouts = 0
        self.batches = 0
        # Recent batches, for the benchmark and /v1/inference/providers: (calls, rows, waited seconds).
        self.recent: deque[tuple[int, int, float]] = deque(maxlen=10_000)

    @property
    def depth(self) -> int:
        return len(self._pending)

    def score(self, user_row: np.ndarray, cand: np.ndarray, timeout: float | None = None,
              terms: object = None) -> asyncio.Future:
        """Score one request's candidates: its user block (DIM,) and each candidate's own
        columns (n, len(features.CANDIDATE_COLUMNS)). A future of (score, ctr, bid factor) arrays,
        or with a `settle` function, of its result for this call's `terms`; Overloaded at once
        when the queue is full. (A plain function, not a coroutine: every bid awaits it, and a
        coroutine would be one more frame to suspend and resume.)"""
        if len(self._pending) >= self.max_queue:
            self.overloaded += 1
            raise Overloaded("scoring queue is full")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        now = time.perf_counter()
        deadline = now + (timeout if timeout is not None else self.timeout)
        if not self._pending:
            self._first_at = now
            self._flush_at = now + self.max_wait
        if deadline < self._flush_at:
            self._flush_at = deadline
        self._pending.append((user_row, cand, future, deadline, terms))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._ticking:
            self._ticking = True
            loop.call_soon(self._tick)
        return future

    def _tick(self) -> None:
        if not self._pending:
            self._ticking = False
            return
        if time.perf_counter() >= self._flush_at:
            self._ticking = False
            self._flush()
        else:
            asyncio.get_running_loop().call_soon(self._tick)

    def _flush(self) -> None:
        """Score every waiting call in one provider pass.

        A call fails with ScoringTimeout when the batch was due only after its deadline (the
        window would have kept it waiting too long); a loop that was merely late to run the
        flush does not fail calls that would have been in time.
        """
        batch, self._pending = self._pending, []
        now = time.perf_counter()
        waited = now - self._first_at
        cutoff = min(now, self._flush_at)
        live = []
        for call in batch:
            f, deadline = call[2], call[3]
            if f.done():  # the caller went away
                continue
            if deadline <= cutoff:
                self.timeouts += 1
                f.set_exception(ScoringTimeout("scoring took longer than the call's budget"))
            else:
                live.append(call)
        if not live:
            return
        sizes = [len(call[1]) for call in live]
        try:
            # (calls, DIM); np.stack costs three times as much
            users = live[0][0][None, :] if len(live) == 1 else np.array([call[0] for call in live])
            cands = [call[1] for call in live]
            scorer = self.scorer
            score, ctr, bid = self.provider.score(self._model(), users, cands) if scorer is None else \
                scorer(self.provider, users, cands)
            if self._settle is not None:
                results = self._settle([call[4] for call in live], score, ctr, bid, sizes)
            else:
                results, start = [], 0
                for n in sizes:
                    results.append((score[start:start + n], ctr[start:start + n], bid[start:start + n]))
                    start += n
        except Exception as exc:  # a provider failure fails this batch's calls, not the loop
            for call in live:
                call[2].set_exception(exc)
            return
        self.batches += 1
        self.recent.append((len(live), int(sum(sizes)), waited))
        if self._on_batch is not None:
            self._on_batch(len(live), int(sum(sizes)), waited)
        for call, result in zip(live, results, strict=True):
            call[2].set_result(result)
