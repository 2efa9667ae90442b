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
from typing import Callable

import numpy as np

from ml.model import SpikingNet, outputs
from ml.providers import Provider


class Overloaded(Exception):
    """The scoring queue is full."""


class ScoringTimeout(Exception):
    """A scoring call waited longer than its timeout."""


class Batcher:
    def __init__(self, provider: Provider, model: Callable[[], SpikingNet], *, max_batch: int = 16,
                 max_wait_us: int = 500, max_queue: int = 1024, timeout_ms: float = 5.0,
                 on_batch: Callable[[int, int, float], None] | None = None) -> None:
        self.provider = provider
        self._model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_us / 1e6
        self.max_queue = max_queue
        self.timeout = timeout_ms / 1000
        self._on_batch = on_batch
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self._first_at = 0.0
        self._ticking = False
        self.overloaded = 0
        self.timeouts = 0
        self.batches = 0
        # Recent batches, for the benchmark and /v1/inference/providers: (calls, rows, waited seconds).
        self.recent: deque[tuple[int, int, float]] = deque(maxlen=10_000)

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def score(self, x: np.ndarray, timeout: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score rows of features; returns (score, ctr, bid factor) arrays."""
        if len(self._pending) >= self.max_queue:
            self.overloaded += 1
            raise Overloaded("scoring queue is full")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        if not self._pending:
            self._first_at = time.perf_counter()
        self._pending.append((x, future))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._ticking:
            self._ticking = True
            loop.call_soon(self._tick)
        try:
            return await asyncio.wait_for(future, timeout if timeout is not None else self.timeout)
        except asyncio.TimeoutError:
            self.timeouts += 1
            raise ScoringTimeout("scoring took longer than the call's budget") from None

    def _tick(self) -> None:
        if not self._pending:
            self._ticking = False
            return
        if time.perf_counter() - self._first_at >= self.max_wait:
            self._ticking = False
            self._flush()
        else:
            asyncio.get_running_loop().call_soon(self._tick)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        waited = time.perf_counter() - self._first_at
        live = [(x, f) for x, f in batch if not f.done()]
        if not live:
            return
        sizes = [len(x) for x, _ in live]
        try:
            z = self.provider.run(self._model(), np.concatenate([x for x, _ in live]))
            score, ctr, bid = outputs(z)
        except Exception as exc:  # a provider failure fails this batch's calls, not the loop
            for _, f in live:
                f.set_exception(exc)
            return
        self.batches += 1
        self.recent.append((len(live), int(sum(sizes)), waited))
        if self._on_batch is not None:
            self._on_batch(len(live), int(sum(sizes)), waited)
        start = 0
        for (_, f), n in zip(live, sizes):
            f.set_result((score[start:start + n], ctr[start:start + n], bid[start:start + n]))
            start += n
