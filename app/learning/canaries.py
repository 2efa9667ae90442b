"""The canary half of a model's version record: serve a recorded version to a share of traffic beside the live one,
judge it periodically, and promote, roll back or abort it (docs/learning.md, "Canaries"). VersionedModel
(app/learning/versions.py) mixes it in; the verdict itself is app/learning/canary.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, TypeVar

from msgspec.structs import replace

from app.admin import AuditTrail
from app.auth import Principal
from app.config import CanaryConfig
from app.errors import Conflict
from app.learning.canary import ABORTED, PROMOTED, Running, comparison, verdict
from app.runtime.canary import Split
from app.runtime.clock import Clock
from state.models import CANARY, LIVE, RETIRED, ROLLED_BACK, CanaryRecord, ModelVersion
from state.ports import ModelRegistry

log = logging.getLogger("contrail.learning")
M = TypeVar("M")


class Canaries(Generic[M]):
    """Canaries of one model. The record (VersionedModel) provides the attributes and hooks declared here."""

    name: str
    _registry: ModelRegistry
    _canary: CanaryConfig
    _running: Running | None
    last_canary: ModelVersion | None
    _clock: Clock
    _metrics: Any
    _audit: AuditTrail
    _lock: asyncio.Lock

    @property
    def canary_limits(self) -> CanaryConfig:
        """What decides a canary of this model (the [canary] configuration)."""
        return self._canary

    # --- hooks (the model's learner) -----------------------------------------------------------------------------

    async def _read(self, path: str) -> M:
        """Load a stored version (InvalidInput when it does not fit)."""
        raise NotImplementedError

    def _serve(self, model: M, path: str) -> None:
        """Swap the model in for the next request."""
        raise NotImplementedError

    def _split(self, split: Split[M] | None) -> None:
        """Serve `split`'s canary to its share of traffic beside the live model (None: the live model only)."""
        raise NotImplementedError

    # --- provided by the version record ---------------------------------------------------------------------------

    def _changing(self) -> asyncio.Lock:
        raise NotImplementedError

    async def _find(self, version: str | None, live: ModelVersion | None) -> ModelVersion:
        raise NotImplementedError

    def _export(self, live: ModelVersion) -> None:
        raise NotImplementedError


    @property
    def canary(self) -> Running | None:
        """The canary being served, with its measurements so far."""
        return self._running

    async def start_canary(self, actor: Principal | str, version: str) -> ModelVersion:
        """Serve a recorded version to `canary.share` of traffic beside the live one for `canary.duration_s`."""
        async with self._changing():
            if self._running is not None:
                raise Conflict(f"{self.name} already has a canary running ({self._running.version.version}); "
                               f"promote or abort it first")
            target = await self._find(version, await self._registry.live(self.name))
            if not target.path:
                raise Conflict(f"version {target.version!r} of {self.name} cannot be served: its stored weights "
                               f"were deleted to keep within learning.keep_files")
            started = await self._begin(target, await self._read(target.path), actor)
        assert started.canary is not None
        await self._audit.record(actor, "model.canary.start", started.version, model=self.name,
                                 share=started.canary.share, ends_at=started.canary.ends_at)
        return started

    async def _begin(self, target: ModelVersion, model: M, actor: Principal | str) -> ModelVersion:
        now = self._clock.now()
        record = CanaryRecord(self._canary.share, now, now + self._canary.duration_s,
                              actor if isinstance(actor, str) else actor.scope)
        version = replace(target, status=CANARY, canary=record)
        await self._registry.add(version)
        self._serve_canary(version, model)
        return version

    def _serve_canary(self, version: ModelVersion, model: M) -> None:
        assert version.canary is not None
        split = Split(model, version.version, version.canary.share, self._canary.window)
        self._running = Running(version, split)
        self._split(split)
        log.info("model canary serving", extra={"model": self.name, "version": version.version,
                                                "share": version.canary.share, "ends_at": version.canary.ends_at})

    async def _resume(self, version: ModelVersion) -> None:
        """A restart serves the canary again until its period's end; its measurements start over."""
        try:
            model = await self._read(version.path)
        except Exception as exc:
            self._running = Running(version, Split(None, version.version, 0.0, 1))
            await self._conclude(ABORTED, f"its file could not be read at restart: {exc}", "learning")
            return
        self._serve_canary(version, model)

    async def end_canary(self, actor: Principal | str, promote: bool) -> ModelVersion:
        """An admin ends the canary now: promoted live, or aborted (the live version keeps serving)."""
        async with self._changing():
            if self._running is None:
                raise Conflict(f"{self.name} has no canary running")
            return await self._conclude(PROMOTED if promote else ABORTED,
                                        f"{'promoted' if promote else 'aborted'} by an admin", actor)

    async def check_canary(self) -> None:
        """The periodic judgement: roll back at once when a limit is crossed, promote at the period's end."""
        running = self._running
        if running is None or self._lock.locked():
            return
        self._export_canary(running.split)
        found = verdict(running.split, self._canary, self._clock.now(), running.ends_at)
        if found is None:
            return
        async with self._lock:
            if self._running is not running:
                return
            await self._conclude(*found, "learning")

    async def _abort_for(self, what: str, actor: Principal | str) -> None:
        """A rollback or reload changes the live version the canary is compared with: the canary ends first."""
        if self._running is not None:
            await self._conclude(ABORTED, f"aborted by {what} of the live version", actor)

    async def _conclude(self, decision: str, reason: str, actor: Principal | str) -> ModelVersion:
        """Record how the canary ended, serve accordingly and audit it (under the change lock). The canary is shown
        gone only once all that is done, so whoever sees it gone finds its audit entry too."""
        running = self._running
        assert running is not None and running.version.canary is not None
        now, split = self._clock.now(), running.split
        record = replace(running.version.canary, decision=decision, decided_at=now, reason=reason,
                         comparison=comparison(split))
        if decision == PROMOTED:
            version = replace(running.version, status=LIVE, activated_at=now, canary=record,
                              note=f"promoted from canary: {reason}")
            await self._registry.add(version, demote_to=RETIRED)
            self._serve(split.model, version.path)
        else:
            version = replace(running.version, status=ROLLED_BACK, canary=record,
                              note=f"canary {decision.replace('_', ' ')}: {reason}")
            await self._registry.add(version)
        self._split(None)  # serving follows the decision at once; the view waits for its audit entry
        await self._ended(version, actor)
        self._running = None
        self.last_canary = version
        return version

    async def _ended(self, version: ModelVersion, actor: Principal | str) -> None:
        record = version.canary
        assert record is not None
        action = {"promoted": "model.canary.promote", "rolled_back": "model.canary.rollback"}.get(
            record.decision, "model.canary.abort")
        await self._audit.record(actor, action, version.version, model=self.name, reason=record.reason,
                                 comparison=record.comparison)
        self._metrics.model_canary_decisions.labels(self.name, record.decision).inc()
        for arm in ("canary", "live"):
            for gauge in (self._metrics.model_canary_calls, self._metrics.model_canary_p95,
                          self._metrics.model_canary_error_rate):
                gauge.labels(self.name, arm).set(0)
        if record.decision == PROMOTED:
            self._export(version)
        log.info("model canary ended", extra={"model": self.name, "version": version.version,
                                              "decision": record.decision, "reason": record.reason})

    def _export_canary(self, split: Split) -> None:
        for arm, stats in (("canary", split.canary), ("live", split.live)):
            self._metrics.model_canary_calls.labels(self.name, arm).set(stats.calls)
            self._metrics.model_canary_p95.labels(self.name, arm).set(stats.p95_s)
            self._metrics.model_canary_error_rate.labels(self.name, arm).set(stats.error_rate)
