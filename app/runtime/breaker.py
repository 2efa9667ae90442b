"""The one circuit breaker: a remote model (offer ranking, lifetime value) is called while it answers in time, and
bypassed for a pause once it keeps failing."""

from __future__ import annotations

from collections.abc import Callable

from app.runtime.clock import Clock


class CircuitBreaker:
    """closed → open after N consecutive failures → half-open after a pause → closed after M successes."""

    CLOSED, HALF_OPEN, OPEN = 0, 1, 2

    def __init__(self, clock: Clock, *, failures: int, open_s: float, successes: int,
                 on_change: Callable[[int], None] = lambda state: None) -> None:
        self._clock = clock
        self._failures_to_open = failures
        self._open_s = open_s
        self._successes_to_close = successes
        self._on_change = on_change
        self.state = self.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    def allow(self) -> bool:
        """May a call go to the remote now? Half-open lets one trial call through at a time."""
        if self.state == self.OPEN and self._clock.now() - self._opened_at >= self._open_s:
            self._set(self.HALF_OPEN)
            self._successes = 0
        if self.state == self.CLOSED:
            return True
        if self.state == self.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def succeeded(self) -> None:
        self._trial_in_flight = False
        self._failures = 0
        if self.state == self.HALF_OPEN:
            self._successes += 1
            if self._successes >= self._successes_to_close:
                self._set(self.CLOSED)

    def failed(self) -> None:
        self._trial_in_flight = False
        self._failures += 1
        if self.state == self.HALF_OPEN or self._failures >= self._failures_to_open:
            self._opened_at = self._clock.now()
            self._set(self.OPEN)

    def _set(self, state: int) -> None:
        if state != self.state:
            self.state = state
            self._on_change(state)
