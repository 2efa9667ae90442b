"""The scoring model in use, swapped atomically, and a canary version scoring a share of the batches beside it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from app.errors import InvalidInput
from app.runtime.canary import Split
from ml.batcher import Batcher
from ml.model import DEFAULT_MODEL, SpikingNet
from ml.providers import Provider

log = logging.getLogger("contrail.bidding")


class ModelHolder:
    """In-flight batches keep the model they started with; new batches see the new one. Which version is live,
    and why, is the learning domain's record (app/learning); this only holds it."""

    def __init__(self, path: str, metrics) -> None:
        self.path = Path(path) if path else DEFAULT_MODEL
        self._metrics = metrics
        try:
            self.current = SpikingNet.load(self.path)
        except (OSError, ValueError) as exc:  # a path set by the operator: say so, with exit 2, not a traceback
            from app.errors import CannotStart
            raise CannotStart(f"inference.model_path: cannot load the bid model: {exc}") from None
        metrics.model_info.labels(self.current.version).set(1)
        self.canary: Split[SpikingNet] | None = None
        self._batcher: Batcher | None = None
        self._canary_provider: tuple[Provider, Provider] | None = None

    def __call__(self) -> SpikingNet:
        return self.current

    @staticmethod
    async def read(path: str | Path) -> SpikingNet:
        """Load and check a model file off the loop; one that does not fit the layout is InvalidInput."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, SpikingNet.load, Path(path))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None

    def swap(self, net: SpikingNet, path: str | Path) -> SpikingNet:
        """Serve `net` (loaded from `path`) from the next batch on; returns the model it replaced."""
        old, self.current, self.path = self.current, net, Path(path)
        self._metrics.model_info.clear()  # one series, the serving version's: a retrain an hour adds none
        self._metrics.model_info.labels(net.version).set(1)
        return old

    def scores_through(self, batcher: Batcher) -> None:
        """The batcher whose batches a canary takes a share of."""
        self._batcher = batcher

    def split(self, split: Split[SpikingNet] | None) -> None:
        """Score a share of the batches with `split`'s canary from the next batch on (None: the live model only,
        and the batcher back to its plain path)."""
        assert self._batcher is not None, "scores_through() first"
        self.canary = split
        self._canary_provider = None
        self._batcher.scorer = None if split is None else self._score

    def _provider_for_canary(self, provider: Provider) -> Provider:
        """A twin of the live provider for the canary: a provider prepares one model's weights at a time, and
        batches alternating between two models would prepare them again on every switch. The twin shares the
        provider's counters."""
        if self._canary_provider is None or self._canary_provider[0] is not provider:
            self._canary_provider = (provider, dataclasses.replace(provider, _prepared=None, _compiled=None))
        return self._canary_provider[1]

    def _score(self, provider: Provider, users: np.ndarray, cands: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """One batch, by the canary for its share of batches (a batch is the unit the scorer runs, so a bid costs
        no more with a canary): each arm's scoring time and failures are measured alike. A batch the canary fails
        is scored by the live model, so bidders see no failure the live model would not have."""
        split, calls = self.canary, len(cands)
        if split is not None and split.draws():
            started = time.perf_counter()
            try:
                out = self._provider_for_canary(provider).score(split.model, users, cands)
            except Exception as exc:
                split.canary.failed(calls)
                log.warning("canary model failed a batch", extra={"version": split.version, "error": str(exc)[:200]})
            else:
                split.canary.observe(time.perf_counter() - started, calls)
                return out
        started = time.perf_counter()
        try:
            out = provider.score(self.current, users, cands)
        except Exception:
            if split is not None:
                split.live.failed(calls)
            raise
        if split is not None:
            split.live.observe(time.perf_counter() - started, calls)
        return out
