"""The versions of Contrail's learned models: what was trained, how it measured, and which one is live."""

from __future__ import annotations

from typing import Any

import msgspec

# A version's status. Exactly one version of a model is live once the model has a registry entry; at most one
# is a canary (served to a share of traffic beside the live one).
LIVE, RETIRED, REJECTED, ROLLED_BACK, CANARY = "live", "retired", "rejected", "rolled_back", "canary"


class CanaryRecord(msgspec.Struct, frozen=True):
    """A version's time as a canary: while it runs, and how it ended."""
    share: float               # of traffic it serves
    started_at: float
    ends_at: float             # when it is judged, unless a limit rolls it back before
    started_by: str            # an admin's scope, or "learning" for a retrained candidate
    decision: str = ""         # "" while it runs; promoted, rolled_back, aborted
    decided_at: float = 0.0
    reason: str = ""
    comparison: dict[str, Any] = {}  # at the decision: each arm's calls, errors, error_rate, p95_ms


class ModelVersion(msgspec.Struct, frozen=True):
    model: str                 # "bidnet", "acceptance"
    sequence: int              # 0, 1, 2, ... per model, in the order versions were registered
    version: str               # the label the model carries (a .npz file's own `version`)
    created_at: float
    source: str                # "config" (the file the server started with), "file" (an admin's reload), "trained"
    status: str                # live, retired, rejected, rolled_back, canary
    path: str = ""             # where its weights are; "" once pruned by the disk budget
    activated_at: float = 0.0  # when it last went live
    metrics: dict[str, Any] = {}  # holdout metrics, the live model's on the same rows, training details
    note: str = ""             # why it was promoted, rejected or rolled back
    canary: CanaryRecord | None = None  # its latest canary, if it was ever one
