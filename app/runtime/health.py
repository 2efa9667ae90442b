"""Liveness and readiness: what /health/ready and the gRPC health service report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from app.runtime.supervisor import Supervisor


class Store(Protocol):
    """A database as readiness sees it."""

    @property
    def is_open(self) -> bool: ...


class ReadyReport(msgspec.Struct):
    ready: bool
    state: str
    checks: dict[str, bool]
    tasks: dict[str, str]


class Health:
    """Ready = not draining, databases open, gRPC listening, background tasks running.

    Ready means every request is answered correctly, not that everything is in memory: what can be answered
    without it loads afterwards, in the `warm_up` task ("running" in the report's tasks until it is done): the live
    orders (retail's requests but the order list wait for them), which users have a stored profile (lookups read
    the store) and the reco and LTV compiled loops (a request compiles them, or loads them from numba's cache).
    """

    def __init__(self, supervisor: Supervisor, databases: dict[str, Store]) -> None:
        self._supervisor = supervisor
        self._databases = databases
        self.draining = False
        self.started = False
        self._checks: dict[str, Callable[[], bool]] = {}
        self._on_drain: list[Callable[[], None]] = []

    def add_check(self, name: str, check: Callable[[], bool]) -> None:
        self._checks[name] = check

    def on_drain(self, callback: Callable[[], None]) -> None:
        self._on_drain.append(callback)

    def drain(self) -> None:
        """Turn readiness off at once (shutdown has begun)."""
        if self.draining:
            return
        self.draining = True
        for callback in self._on_drain:
            callback()

    def report(self) -> ReadyReport:
        checks = {f"db:{name}": db.is_open for name, db in self._databases.items()}
        checks.update({name: bool(check()) for name, check in self._checks.items()})
        checks["tasks"] = self._supervisor.healthy()
        checks["started"] = self.started
        tasks = {name: s.state for name, s in self._supervisor.states.items()}
        ready = not self.draining and all(checks.values())
        state = "draining" if self.draining else ("ready" if ready else "not_ready")
        return ReadyReport(ready, state, checks, tasks)
