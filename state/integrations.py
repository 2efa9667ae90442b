"""What Contrail exchanges with the campaign team's tools (task trackers, asset libraries; adapters/http/): the values
the domain reads, and the one error every tool's failure is raised as."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec


class IntegrationError(Exception):
    """A tool refused a call, kept failing, or did not answer before the deadline. `status` is the last HTTP status
    the tool answered (None when it never answered: connection refused, timeout)."""

    def __init__(self, tool: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{tool}: {message}" + (f" (HTTP {status})" if status is not None else ""))
        self.tool = tool
        self.message = message
        self.status = status


TaskState = Literal["open", "in_progress", "done"]


@dataclass(frozen=True)
class TaskLink:
    """Where a created task lives: the tool, its id, its human key (Jira's "MKT-42"; Asana's gid) and a URL to open."""

    tool: str
    id: str
    key: str
    url: str


@dataclass(frozen=True)
class TaskStatus:
    state: TaskState
    raw: str


@dataclass(frozen=True)
class Asset:
    dam: str
    id: str
    version: str
    name: str
    mime: str
    url: str
    modified_at: str | None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class AssetProblem(msgspec.Struct, frozen=True):
    """An imported creative whose asset the last sync could not read."""
    creative_id: str
    dam_id: str
    error: str
    since: float    # when its syncs began to fail (epoch seconds)
    failures: int   # the syncs in a row that failed for it


class AssetSync(msgspec.Struct, frozen=True):
    """How a campaign's imported creatives last synced with the asset library."""
    campaign_id: str
    dam: str | None                # integrations.dam; None: none configured
    last_sync_at: float | None     # the last sync's start (epoch seconds); None: none since the server started
    folder_error: str | None       # the team folder's listing failed in the last sync (each asset was then read alone)
    failing: list[AssetProblem]


def changed_since(assets: Iterable[Asset], known: Mapping[str, str]) -> list[Asset]:
    """The assets a sync must fetch again: new ones, and ones whose version differs from the one it knows."""
    return [asset for asset in assets if known.get(asset.id) != asset.version]
