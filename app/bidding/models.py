"""The scoring model in use, swapped atomically."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.errors import InvalidInput
from ml.model import DEFAULT_MODEL, SpikingNet


class ModelHolder:
    """In-flight batches keep the model they started with; new batches see the new one. Which version is live,
    and why, is the learning domain's record (app/learning); this only holds it."""

    def __init__(self, path: str, metrics) -> None:
        self.path = Path(path) if path else DEFAULT_MODEL
        self._metrics = metrics
        self.current = SpikingNet.load(self.path)
        metrics.model_info.labels(self.current.version).set(1)

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
        self._metrics.model_info.labels(old.version).set(0)
        self._metrics.model_info.labels(net.version).set(1)
        return old
