"""The recommendation model's versions in the model registry (docs/learning.md, "Canaries"; docs/reco.md): each
trained model that passed its held-out evaluation is recorded, served live or sent out as a canary, and can be
rolled back to or served as a canary later. Versions are stored in `reco_models` (the registry's path
`reco_models:<sequence>`), so every node reads them from the system of record; version 0 is the seed (the live
features with the seed blend weights and no embeddings)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import InvalidInput
from app.learning.versions import Run, VersionedModel, Versioning
from app.runtime.canary import Split
from app.runtime.clock import Clock
from state.models import LIVE, ModelVersion
from state.ports import RecoStore
from state.reco import SavedModel

if TYPE_CHECKING:
    from app.reco.service import RecoService

NAME = "reco"
SEED = "seed"
SEED_PATH = "builtin:seed"   # version 0 has nothing stored: the features alone, with the seed weights
PREFIX = "reco_models:"


def path_of(saved: SavedModel | None) -> str:
    return SEED_PATH if saved is None else f"{PREFIX}{saved.sequence}"


class RecoVersions(VersionedModel[SavedModel | None]):
    """The record of the recommendation model's versions; the service trains and serves them."""

    name = NAME

    def __init__(self, service: RecoService, store: RecoStore, versioning: Versioning, clock: Clock,
                 metrics) -> None:
        super().__init__(versioning.registry, clock, metrics, versioning.audit, Path(""), versioning.keep,
                         versioning.canary)
        self._service = service
        self._models = store

    async def _read(self, path: str) -> SavedModel | None:
        if path == SEED_PATH:
            return None
        saved = await self._models.model(int(path[len(PREFIX):])) if path.startswith(PREFIX) else None
        if saved is None:
            raise InvalidInput(f"no stored recommendation model at {path!r}")
        return saved

    async def _store(self, model: SavedModel | None, sequence: int, label: str) -> str:
        assert model is not None, "the seed has nothing to store"
        await self._models.add_model(model)
        return path_of(model)

    def _owned(self, path: str) -> bool:
        return path.startswith(PREFIX)

    async def _discard(self, version: ModelVersion) -> None:
        await self._models.drop_model(int(version.path[len(PREFIX):]))

    def _serve(self, model: SavedModel | None, path: str) -> None:
        self._service.serve(model)

    def _serving(self) -> tuple[str, str]:
        saved = self._service.saved
        return (saved.version if saved is not None else SEED), path_of(saved)

    def _split(self, split: Split[SavedModel | None] | None) -> None:
        self._service.serve_canary(split)

    def _label(self, model: SavedModel | None) -> str:
        return model.version if model is not None else SEED

    async def _first_version(self) -> ModelVersion | None:
        """The stored model the service started with (kept before the registry knew reco), else the seed."""
        saved = self._service.saved
        if saved is None:
            return await super()._first_version()
        return ModelVersion(NAME, saved.sequence, saved.version, saved.trained_at, "trained", LIVE, path_of(saved),
                            saved.trained_at, {"evaluation": dict(saved.evaluation or {})},
                            "the stored model the server started with")

    async def retrain(self, actor="learning") -> Run:
        """POST /v1/admin/models/reco/train: the service's training (the same as POST /v1/admin/reco/train)."""
        await self._service.train(actor)
        assert self.last_run is not None
        return self.last_run
