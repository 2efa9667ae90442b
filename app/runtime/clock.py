"""One injectable clock: everything that expires asks it for the time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests move by hand, so expiry is testable without sleeping."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


class ShiftedClock:
    """Wall-clock time moved on by hand: the demo seed plays out an order's expiry or its flight in seconds."""

    def __init__(self) -> None:
        self._shift = 0.0

    def now(self) -> float:
        return time.time() + self._shift

    def advance(self, seconds: float) -> None:
        self._shift += seconds
