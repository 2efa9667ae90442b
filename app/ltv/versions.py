"""The lifetime-value model's versions in the model registry (docs/learning.md, "Canaries"; docs/ltv.md): each fit
that passed its holdout is recorded, served live or sent out as a canary, and can be rolled back to or served as a
canary later. Versions are stored in `ltv_models` (the registry's path `ltv_models:<sequence>`), in the system of
record. Before the first fit nothing is registered: there is no model to record (predictions fall back)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import InvalidInput
from app.learning.versions import Run, VersionedModel, Versioning
from app.runtime.canary import Split
from app.runtime.clock import Clock
from state.ltv import SavedLtvModel
from state.models import LIVE, ModelVersion
from state.ports import LtvStore

if TYPE_CHECKING:
    from app.ltv.service import LtvService

NAME = "ltv"
PREFIX = "ltv_models:"


def path_of(saved: SavedLtvModel) -> str:
    return f"{PREFIX}{saved.sequence}"


class LtvVersions(VersionedModel[SavedLtvModel]):
    """The record of the lifetime-value model's versions; the service fits and serves them."""

    name = NAME

    def __init__(self, service: LtvService, store: LtvStore, versioning: Versioning, clock: Clock, metrics) -> None:
        super().__init__(versioning.registry, clock, metrics, versioning.audit, Path(""), versioning.keep,
                         versioning.canary)
        self._service = service
        self._models = store

    async def _read(self, path: str) -> SavedLtvModel:
        saved = await self._models.model(int(path[len(PREFIX):])) if path.startswith(PREFIX) else None
        if saved is None:
            raise InvalidInput(f"no stored lifetime-value model at {path!r}")
        return saved

    async def _store(self, model: SavedLtvModel, sequence: int, label: str) -> str:
        await self._models.add_model(model)
        return path_of(model)

    def _owned(self, path: str) -> bool:
        return path.startswith(PREFIX)

    async def _discard(self, version: ModelVersion) -> None:
        await self._models.drop_model(int(version.path[len(PREFIX):]))

    def _serve(self, model: SavedLtvModel, path: str) -> None:
        self._service.serve(model)

    def _serving(self) -> tuple[str, str]:
        saved = self._service.saved
        return (saved.version, path_of(saved)) if saved is not None else ("", "")

    def _split(self, split: Split[SavedLtvModel] | None) -> None:
        self._service.serve_canary(split)

    def _label(self, model: SavedLtvModel) -> str:
        return model.version

    async def _first_version(self) -> ModelVersion | None:
        """The stored model the service started with (fitted before the registry knew LTV); none before a fit."""
        saved = self._service.saved
        if saved is None:
            return None
        return ModelVersion(NAME, saved.sequence, saved.version, saved.trained_at, "trained", LIVE, path_of(saved),
                            saved.trained_at, {"evaluation": dict(saved.evaluation)},
                            "the stored model the server started with")

    async def retrain(self, actor="learning") -> Run:
        """POST /v1/admin/models/ltv/train: the service's refit (the same as POST /v1/admin/ltv/refit)."""
        await self._service.refit(actor)
        assert self.last_run is not None
        return self.last_run
