"""What every learned model shares: its versions in the registry, which one is live, rollback, the disk budget of
its files, and one change at a time. A model's learner says how to read, write and serve its weights and how to
train a candidate; docs/learning.md."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from msgspec.structs import replace

from app.admin import AuditTrail
from app.auth import Principal
from app.config import CanaryConfig
from app.errors import Conflict, NotFound
from app.learning.canary import ABORTED, PROMOTED, Running, comparison, verdict
from app.runtime.canary import Split
from app.runtime.clock import Clock
from state.models import CANARY, LIVE, REJECTED, RETIRED, ROLLED_BACK, CanaryRecord, ModelVersion
from state.ports import ModelRegistry

log = logging.getLogger("contrail.learning")
M = TypeVar("M")


@dataclass
class Run:
    """One retrain: what happened and why (the last one is kept for GET /v1/admin/models)."""
    model: str
    status: str                  # promoted, canary (out as a canary), rejected, recorded (better, not live), skipped
    reason: str
    started_at: float
    seconds: float = 0.0
    rows: int = 0
    clicks: int = 0              # positives: clicks for the bid model, paid orders for acceptance
    version: str | None = None   # the candidate's version, when one was trained
    candidate: dict[str, float] = field(default_factory=dict)   # its holdout metrics
    live: dict[str, float] = field(default_factory=dict)        # the live model's, on the same rows


def write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Write a file through `write(file)` atomically and durably: a crash leaves the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VersionedModel(Generic[M]):
    """The version record of one model. Subclasses give `name` and the four hooks below, and train by calling
    `_record()` with each candidate."""

    name: str

    def __init__(self, registry: ModelRegistry, clock: Clock, metrics, audit: AuditTrail, models_dir: Path,
                 keep_files: int, canary: CanaryConfig) -> None:
        self._registry = registry
        self._canary = canary
        self._running: Running | None = None
        self.last_canary: ModelVersion | None = None   # the newest version whose canary ended
        self._clock = clock
        self._metrics = metrics
        self._audit = audit
        self._dir = models_dir
        self._keep_files = keep_files
        self._lock = asyncio.Lock()
        self.last_run: Run | None = None

    # --- hooks ---------------------------------------------------------------------------------------------------

    async def _read(self, path: str) -> M:
        """Load a weights file (InvalidInput when it does not fit)."""
        raise NotImplementedError

    def _write(self, model: M, path: Path) -> None:
        """Write weights (called in a worker thread)."""
        raise NotImplementedError

    def _serve(self, model: M, path: str) -> None:
        """Swap the model in for the next request."""
        raise NotImplementedError

    def _serving(self) -> tuple[str, str]:
        """(version, path) of what serves now, before the registry knows of any version."""
        raise NotImplementedError

    def _split(self, split: Split[M] | None) -> None:
        """Serve `split`'s canary to its share of traffic beside the live model (None: the live model only)."""
        raise NotImplementedError

    async def retrain(self, actor: Principal | str = "learning") -> Run:
        raise NotImplementedError

    # --- start ---------------------------------------------------------------------------------------------------

    async def load(self) -> None:
        """Serve the version the registry says is live (a restart comes back to the model that served before);
        the first start registers what serves as version 0."""
        live = await self._registry.live(self.name)
        if live is None:
            version, path = self._serving()
            now = self._clock.now()
            await self._registry.add(ModelVersion(self.name, await self._registry.next_sequence(self.name), version,
                                                  now, "config", LIVE, path, now,
                                                  note="the model the server started with"))
            return
        if live.path and live.path != self._serving()[1]:
            try:
                self._serve(await self._read(live.path), live.path)
            except Exception as exc:  # keep serving the configured model, and say why
                log.error("live model could not be restored", extra={"model": self.name, "version": live.version,
                                                                     "path": live.path, "error": str(exc)})
        self._export(live)
        ended = [v for v in await self.versions(20) if v.canary is not None and v.canary.decision]
        self.last_canary = max(ended, key=lambda v: v.canary.decided_at if v.canary else 0.0, default=None)
        running = await self._registry.canary(self.name)
        if running is not None:
            await self._resume(running)

    # --- reads ---------------------------------------------------------------------------------------------------

    async def versions(self, limit: int = 50, before: int | None = None) -> list[ModelVersion]:
        return await self._registry.versions(self.name, limit, before)

    async def live(self) -> ModelVersion | None:
        return await self._registry.live(self.name)

    @property
    def serving(self) -> str:
        """The version that serves now."""
        return self._serving()[0]

    # --- changes -------------------------------------------------------------------------------------------------

    def _changing(self) -> asyncio.Lock:
        if self._lock.locked():
            raise Conflict(f"{self.name} is already being trained or swapped; try again when it is done")
        return self._lock

    async def retrain_if_due(self) -> None:
        """The periodic retrain: quietly nothing while another change is under way."""
        if not self._lock.locked():
            await self.retrain()

    async def _finish(self, run: Run, actor: Principal | str) -> Run:
        self.last_run = run
        self._metrics.model_trainings.labels(self.name, run.status).inc()
        if run.status != "skipped":
            self._metrics.model_training_seconds.labels(self.name).observe(run.seconds)
            await self._audit.record(actor, "model.train", run.version or self.name, model=self.name,
                                     status=run.status, reason=run.reason)
        log.info("model retrain", extra={"model": self.name, "status": run.status, "reason": run.reason,
                                         "version": run.version, "rows": run.rows, "seconds": round(run.seconds, 2)})
        return run

    async def _record(self, model: M, sequence: int, label: str, promote: bool, metrics: dict[str, Any],
                      note: str) -> ModelVersion:
        """Write a candidate's file, register it (live or rejected) and serve it when promoted; then keep the
        disk budget."""
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / f"{label}.npz"
        await asyncio.get_running_loop().run_in_executor(None, self._write, model, path)
        now = self._clock.now()
        as_canary = promote and self._canary.on_retrain
        if as_canary and self._running is not None:
            note += f"; not sent out as a canary: {self._running.version.version} is one now"
        live = promote and not as_canary
        version = ModelVersion(self.name, sequence, label, now, "trained", LIVE if live else REJECTED,
                               str(path), now if live else 0.0, metrics, note)
        if as_canary and self._running is None:
            version = await self._begin(version, model, "learning")
        else:
            await self._registry.add(version, demote_to=RETIRED)
        if live:
            self._serve(model, str(path))
            self._export(version)
        await self._prune()
        return version

    def _outcome(self, run: Run, version: ModelVersion) -> None:
        """A promoted run's candidate went out as a canary (canary.on_retrain), or stayed recorded because another
        canary runs."""
        if run.status != "promoted" or version.status == LIVE:
            return
        if version.status == CANARY and version.canary is not None:
            run.status = "canary"
            run.reason += (f"; serving {version.canary.share:.0%} of traffic as a canary until "
                           f"{version.canary.ends_at:.0f}")
        else:
            run.status = "recorded"
            run.reason = version.note

    async def load_file(self, actor: Principal | str, path: str) -> ModelVersion:
        """An admin's weights file goes live and is recorded as a version."""
        model = await self._read(path)
        async with self._changing():
            aborted = await self._abort_for("a reload")
            now = self._clock.now()
            version = ModelVersion(self.name, await self._registry.next_sequence(self.name), self._label(model),
                                   now, "file", LIVE, path, now, note="reloaded by an admin")
            await self._registry.add(version, demote_to=RETIRED)
            self._serve(model, path)
        if aborted is not None:
            await self._ended(aborted, actor)
        await self._audit.record(actor, "model.reload", version.version, model=self.name, path=path)
        self._export(version)
        return version

    def _label(self, model: M) -> str:
        return str(getattr(model, "version", self.name))

    async def rollback(self, actor: Principal | str, version: str | None) -> ModelVersion:
        """Put `version` (default: the newest version before the live one that was live and whose file is kept)
        back live; the version it replaces is marked rolled back."""
        async with self._changing():
            live = await self._registry.live(self.name)
            target = await self._find(version, live)
            if not target.path:
                raise Conflict(f"version {target.version!r} of {self.name} cannot go live: its file was deleted to "
                               f"keep within learning.keep_files")
            model = await self._read(target.path)
            aborted = await self._abort_for("a rollback")
            note = f"rolled back from {live.version}" if live is not None else "activated"
            await self._registry.activate(self.name, target.sequence, self._clock.now(), ROLLED_BACK, note)
            self._serve(model, target.path)
        if aborted is not None:
            await self._ended(aborted, actor)
        await self._audit.record(actor, "model.rollback", target.version, model=self.name,
                                 replaced=live.version if live is not None else None)
        restored = await self._registry.get(self.name, target.sequence)
        assert restored is not None
        self._export(restored)
        return restored

    async def _all(self) -> AsyncIterator[ModelVersion]:
        before = None
        while page := await self._registry.versions(self.name, 200, before):
            for v in page:
                yield v
            before = page[-1].sequence

    async def _find(self, version: str | None, live: ModelVersion | None) -> ModelVersion:
        async for v in self._all():
            if live is not None and v.sequence == live.sequence:
                if version is not None and v.version == version:
                    raise Conflict(f"version {version!r} of {self.name} is already live")
                continue
            if version is not None and v.version == version:
                return v
            if version is None and v.status in (RETIRED, ROLLED_BACK) and v.path and \
                    (live is None or v.sequence < live.sequence):
                return v
        if version is not None:
            raise NotFound(f"{self.name} has no version {version!r}")
        raise Conflict(f"{self.name} has no earlier version to roll back to")

    async def _prune(self) -> None:
        """Keep the newest `keep_files` trained files besides the live one; older ones are deleted, their records
        stay."""
        kept = 0
        async for v in self._all():
            if not v.path or v.status in (LIVE, CANARY) or Path(v.path).parent != self._dir:
                continue
            kept += 1
            if kept > self._keep_files:
                Path(v.path).unlink(missing_ok=True)
                await self._registry.pruned(self.name, v.sequence)

    def _export(self, live: ModelVersion) -> None:
        hold: dict[str, Any] = live.metrics.get("holdout", {})
        for key in ("auc", "log_loss", "ece"):
            if key in hold:
                self._metrics.model_holdout.labels(self.name, key).set(hold[key])

    # --- canaries ------------------------------------------------------------------------------------------------

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
                raise Conflict(f"version {target.version!r} of {self.name} cannot be served: its file was deleted "
                               f"to keep within learning.keep_files")
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
            ended = await self._conclude(ABORTED, f"its file could not be read at restart: {exc}")
            await self._ended(ended, "learning")
            return
        self._serve_canary(version, model)

    async def end_canary(self, actor: Principal | str, promote: bool) -> ModelVersion:
        """An admin ends the canary now: promoted live, or aborted (the live version keeps serving)."""
        async with self._changing():
            if self._running is None:
                raise Conflict(f"{self.name} has no canary running")
            ended = await self._conclude(PROMOTED if promote else ABORTED,
                                         f"{'promoted' if promote else 'aborted'} by an admin")
        await self._ended(ended, actor)
        return ended

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
            ended = await self._conclude(*found)
        await self._ended(ended, "learning")

    async def _abort_for(self, what: str) -> ModelVersion | None:
        """A rollback or reload changes the live version the canary is compared with: the canary ends first."""
        if self._running is None:
            return None
        return await self._conclude(ABORTED, f"aborted by {what} of the live version")

    async def _conclude(self, decision: str, reason: str) -> ModelVersion:
        """Record how the canary ended and serve accordingly (under the change lock)."""
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
        self._split(None)
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
