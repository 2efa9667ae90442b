"""The scoring model in use, swapped atomically on reload."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.admin import AuditTrail
from app.auth import Principal
from app.errors import InvalidInput
from ml.model import DEFAULT_MODEL, SpikingNet


class ModelHolder:
    """In-flight batches keep the model they started with; new batches see the new one."""

    def __init__(self, path: str, metrics, audit: AuditTrail) -> None:
        self._path = Path(path) if path else DEFAULT_MODEL
        self._metrics = metrics
        self._audit = audit
        self.current = SpikingNet.load(self._path)
        metrics.model_info.labels(self.current.version).set(1)

    def __call__(self) -> SpikingNet:
        return self.current

    async def reload(self, actor: Principal | str, path: str | None = None) -> SpikingNet:
        """Load `path` (or the configured file again) off the loop, then swap; in the audit log as `actor`'s."""
        target = Path(path) if path else self._path
        try:
            net = await asyncio.get_running_loop().run_in_executor(None, SpikingNet.load, target)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        old = self.current
        self.current = net
        self._path = target
        self._metrics.model_info.labels(old.version).set(0)
        self._metrics.model_info.labels(net.version).set(1)
        await self._audit.record(actor, "model.reload", net.version, path=path)
        return net
