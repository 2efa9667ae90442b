"""What campaign management needs of the world outside (implemented in adapters/http/): the team's task tracker and
asset library, and the external decision service. Storage ports are in state/ports.py."""

from __future__ import annotations

from typing import Any, Protocol

from state.integrations import Asset, TaskLink, TaskStatus


class TaskTracker(Protocol):
    """Jira or Asana (adapters/http/tasks.py): open a task for the approvers, read its status back."""

    async def create(self, summary: str, description: str, labels: list[str]) -> TaskLink: ...

    async def status(self, link: TaskLink) -> TaskStatus: ...

    async def close(self) -> None: ...


class AssetLibrary(Protocol):
    """AEM Assets, Bynder or Aprimo (adapters/http/dam.py): a folder's assets, a search, one asset's metadata."""

    async def list_folder(self, folder: str) -> list[Asset]: ...

    async def search(self, query: str) -> list[Asset]: ...

    async def metadata(self, asset_id: str) -> Asset: ...

    async def close(self) -> None: ...


class DecisionService(Protocol):
    """The external decision service (adapters/http/decision.py DecisionClient); every failure raises."""

    async def get_recommendation(self, user_id: str, context: dict[str, Any], arms: list[str]) -> str | None: ...

    async def send_reward(self, user_id: str, action: str, reward: float) -> None: ...

    async def sync_catalog(self, items: list[dict[str, Any]]) -> None: ...

    async def close(self) -> None: ...
