"""A model version served to a share of traffic beside the live one, and the same measurements of both.

The domain that scores (bidding's ModelHolder, retail's Ranker) holds a `Split` only while a canary runs, and
checks for None otherwise; the learning domain decides from the two arms' measurements (app/learning/canary.py)."""

from __future__ import annotations

import logging
import math
import random
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("contrail.learning")
M = TypeVar("M")
R = TypeVar("R")
_BUCKETS = 10_000


class Arm:
    """One version's calls, failures and newest scoring times."""

    def __init__(self, window: int) -> None:
        self.calls = 0
        self.errors = 0
        self._seconds: deque[float] = deque(maxlen=window)

    def observe(self, seconds: float, calls: int = 1) -> None:
        """`calls` calls scored in one pass that took `seconds`."""
        self.calls += calls
        self._seconds.append(seconds)

    def failed(self, calls: int = 1) -> None:
        self.calls += calls
        self.errors += calls

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    @property
    def p95_s(self) -> float:
        """The 95th percentile of the newest scoring times (nearest rank); 0 before any."""
        if not self._seconds:
            return 0.0
        ordered = sorted(self._seconds)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def summary(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "error_rate": round(self.error_rate, 6),
                "p95_ms": round(self.p95_s * 1000, 4), "timed": len(self._seconds)}


class Split(Generic[M]):
    """A canary version and its share of traffic, with both arms' measurements."""

    def __init__(self, model: M, version: str, share: float, window: int, rng: random.Random | None = None) -> None:
        self.model = model
        self.version = version
        self.share = share
        self.canary = Arm(window)
        self.live = Arm(window)
        self._rng = rng or random.Random()
        self._below = int(round(share * _BUCKETS))

    def takes(self, key: str) -> bool:
        """Whether the canary serves this key (a user's id): the same key always lands on the same side."""
        return zlib.crc32(key.encode()) % _BUCKETS < self._below

    def draws(self) -> bool:
        """Whether the canary serves this call, by chance (where a call has no key of its own)."""
        return self._rng.random() < self.share

    def by_canary(self, score: Callable[[], R], calls: int = 1) -> R | None:
        """`score()` (the canary version's work for `calls` calls), timed; None when it failed, counted as the
        canary's errors: the caller then asks the live version, so users see no failure it would not have made."""
        started = time.perf_counter()
        try:
            result = score()
        except Exception as exc:
            self.canary.failed(calls)
            log.warning("canary model failed", extra={"version": self.version, "error": str(exc)[:200]})
            return None
        self.canary.observe(time.perf_counter() - started, calls)
        return result

    def by_live(self, score: Callable[[], R], calls: int = 1) -> R:
        """`score()` (the live version's work for `calls` calls), timed and its failures counted as the canary's are."""
        started = time.perf_counter()
        try:
            result = score()
        except Exception:
            self.live.failed(calls)
            raise
        self.live.observe(time.perf_counter() - started, calls)
        return result
