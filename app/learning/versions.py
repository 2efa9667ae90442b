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
from typing import Any, TypeVar

from app.admin import AuditTrail
from app.auth import Principal
from app.config import CanaryConfig
from app.errors import Conflict, NotFound
from app.learning.canaries import Canaries
from app.learning.canary import Running
from app.runtime.clock import Clock
from state.models import CANARY, LIVE, REJECTED, RETIRED, ROLLED_BACK, ModelVersion
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


@dataclass(frozen=True)
class Versioning:
    """What a model's version record needs besides the model: the registry, the audit trail and the limits."""
    registry: ModelRegistry
    audit: AuditTrail
    canary: CanaryConfig
    keep: int                    # learning.keep_files: stored versions kept besides the live one and a canary


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


class VersionedModel(Canaries[M]):
    """The version record of one model. Subclasses give `name`, the hooks below and Canaries' (`_read`, `_serve`,
    `_split`), and train by calling `_record()` with each candidate. Versions are files in `models_dir` unless a
    subclass stores them elsewhere (`_store`, `_owned`, `_discard`)."""

    suffix = ".npz"   # of the files versions are written to

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

    def _write(self, model: M, path: Path) -> None:
        """Write weights (called in a worker thread)."""
        raise NotImplementedError

    def _serving(self) -> tuple[str, str]:
        """(version, path) of what serves now, before the registry knows of any version."""
        raise NotImplementedError

    async def retrain(self, actor: Principal | str = "learning") -> Run:
        raise NotImplementedError

    # --- start ---------------------------------------------------------------------------------------------------

    async def load(self) -> None:
        """Serve the version the registry says is live (a restart comes back to the model that served before);
        the first start registers what serves as version 0."""
        live = await self._registry.live(self.name)
        if live is None:
            first = await self._first_version()
            if first is not None:
                await self._registry.add(first)
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

    async def _first_version(self) -> ModelVersion | None:
        """What the registry records as live at the first start: what serves (None: nothing to record yet)."""
        version, path = self._serving()
        now = self._clock.now()
        return ModelVersion(self.name, await self._registry.next_sequence(self.name), version, now, "config", LIVE,
                            path, now, note="the model the server started with")

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
                      note: str, may_canary: bool = True) -> ModelVersion:
        """Write a candidate's file, register it (live or rejected) and serve it when promoted; then keep the
        disk budget."""
        path = await self._store(model, sequence, label)
        now = self._clock.now()
        as_canary = promote and may_canary and self._canary.on_retrain
        if as_canary and self._running is not None:
            note += f"; not sent out as a canary: {self._running.version.version} is one now"
        live = promote and not as_canary
        version = ModelVersion(self.name, sequence, label, now, "trained", LIVE if live else REJECTED,
                               path, now if live else 0.0, metrics, note)
        if as_canary and self._running is None:
            version = await self._begin(version, model, "learning")
        else:
            await self._registry.add(version, demote_to=RETIRED)
        if live:
            self._serve(model, path)
            self._export(version)
        await self._prune()
        return version

    async def next_sequence(self) -> int:
        return await self._registry.next_sequence(self.name)

    async def offer(self, model: M, sequence: int, label: str, metrics: dict[str, Any], note: str,
                    may_canary: bool = True) -> ModelVersion:
        """A candidate that passed its own holdout, from a model that trains itself (reco, LTV): recorded and served
        live, or sent out as a canary with canary.on_retrain (recorded only while another canary runs; straight live
        when `may_canary` is false, as a first model is: there is no live one to compare it with)."""
        async with self._lock:
            return await self._record(model, sequence, label, True, metrics, note, may_canary)

    async def report(self, run: Run, actor: Principal | str) -> Run:
        """Such a model's training run: counted, audited and kept as `last_run`."""
        return await self._finish(run, actor)

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
            await self._abort_for("a reload", actor)
            now = self._clock.now()
            version = ModelVersion(self.name, await self._registry.next_sequence(self.name), self._label(model),
                                   now, "file", LIVE, path, now, note="reloaded by an admin")
            await self._registry.add(version, demote_to=RETIRED)
            self._serve(model, path)
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
                raise Conflict(f"version {target.version!r} of {self.name} cannot go live: its stored weights were "
                               f"deleted to keep within learning.keep_files")
            model = await self._read(target.path)
            await self._abort_for("a rollback", actor)
            note = f"rolled back from {live.version}" if live is not None else "activated"
            await self._registry.activate(self.name, target.sequence, self._clock.now(), ROLLED_BACK, note)
            self._serve(model, target.path)
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
            if not v.path or v.status in (LIVE, CANARY) or not self._owned(v.path):
                continue
            kept += 1
            if kept > self._keep_files:
                await self._discard(v)
                await self._registry.pruned(self.name, v.sequence)

    async def _store(self, model: M, sequence: int, label: str) -> str:
        """Keep a candidate durably; its path. By default a file `<label><suffix>` in `models_dir`."""
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / f"{label}{self.suffix}"
        await asyncio.get_running_loop().run_in_executor(None, self._write, model, path)
        return str(path)

    def _owned(self, path: str) -> bool:
        """Whether the disk budget governs this stored version (an admin's own file is never deleted)."""
        return Path(path).parent == self._dir

    async def _discard(self, version: ModelVersion) -> None:
        Path(version.path).unlink(missing_ok=True)

    def _export(self, live: ModelVersion) -> None:
        hold: dict[str, Any] = live.metrics.get("holdout", {})
        for key in ("auc", "log_loss", "ece"):
            if key in hold:
                self._metrics.model_holdout.labels(self.name, key).set(hold[key])
