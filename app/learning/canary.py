"""When a canary model version is promoted or rolled back: its measurements against the limits (docs/learning.md,
"Canaries"). Pure: the version record (app/learning/versions.py) acts on the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.config import CanaryConfig
from app.runtime.canary import Split
from state.models import ModelVersion

PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"


@dataclass
class Running:
    """A canary being served: its registry record and its split of traffic."""
    version: ModelVersion
    split: Split

    @property
    def ends_at(self) -> float:
        assert self.version.canary is not None
        return self.version.canary.ends_at


def comparison(split: Split) -> dict[str, Any]:
    return {"canary": split.canary.summary(), "live": split.live.summary()}


def _held(split: Split) -> str:
    c, live = split.canary, split.live
    return (f"canary p95 {c.p95_s * 1000:.3f} ms (live {live.p95_s * 1000:.3f} ms), errors "
            f"{c.error_rate:.2%} (live {live.error_rate:.2%}) over {c.calls} calls")


def verdict(split: Split, config: CanaryConfig, now: float, ends_at: float) -> tuple[str, str] | None:
    """(decision, reason) when the canary is to end now, else None. A limit crossed rolls it back at once, but only
    after `min_calls` canary calls, so one slow first call does not decide; at the period's end it is promoted if it
    held over at least `min_calls` calls."""
    c = split.canary
    if c.calls >= config.min_calls:
        if c.p95_s * 1000 > config.max_p95_ms:
            return ROLLED_BACK, f"p95 above canary.max_p95_ms ({config.max_p95_ms} ms): {_held(split)}"
        if c.error_rate > config.max_error_rate:
            return ROLLED_BACK, f"error rate above canary.max_error_rate ({config.max_error_rate:.2%}): {_held(split)}"
    if now < ends_at:
        return None
    if c.calls < config.min_calls:
        return ROLLED_BACK, (f"only {c.calls} calls in its period, too few to judge (canary.min_calls is "
                             f"{config.min_calls}): {_held(split)}")
    return PROMOTED, f"held for its period: {_held(split)}"
