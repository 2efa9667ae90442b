"""Background-task supervisor: named tasks, restarted with backoff when they crash."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opentelemetry.context import Context

from app.runtime.metrics import Metrics
from app.runtime.tracing import Tracing

log = logging.getLogger("contrail.tasks")

TaskFactory = Callable[[], Awaitable[None]]


@dataclass
class TaskState:
    name: str
    state: str = "pending"  # pending | running | backoff | stopped | finished
    restarts: int = 0
    last_error: str | None = None
    last_started: float | None = None


class Supervisor:
    """Runs each named coroutine factory; a crash is logged, counted and retried with backoff."""

    def __init__(self, metrics: Metrics, *, backoff_s: float, backoff_max_s: float,
                 tracing: Tracing | None = None) -> None:
        self._metrics = metrics
        self._tracing = tracing or Tracing.off()
        self._backoff = backoff_s
        self._backoff_max = backoff_max_s
        self._factories: dict[str, TaskFactory] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.states: dict[str, TaskState] = {}

    def add(self, name: str, factory: TaskFactory) -> None:
        """Register a task before start()."""
        self._factories[name] = factory
        self.states[name] = TaskState(name)

    def add_periodic(self, name: str, interval_s: float, tick: Callable[[], Awaitable[object] | object]) -> None:
        """Run `tick` (a function or coroutine function) every `interval_s`, first after one interval; a tick that
        raises restarts the task with backoff like any other."""
        tracing = self._tracing

        async def every() -> None:
            current = asyncio.current_task()
            while True:
                await asyncio.sleep(interval_s)
                # Each run its own trace, begun with no caller's context (the task outlives whatever started it).
                with tracing.span(f"task {name}", context=Context(), attributes={"contrail.task": name}) \
                        if tracing.enabled else contextlib.nullcontext():
                    result = tick()
                    if inspect.isawaitable(result):
                        await result
                # A library that swallowed the cancellation mid-tick (redis-py's pipeline has) leaves it asked for
                # and not delivered: honour it here, or the task would tick on and stop() would wait for ever.
                if current is not None and current.cancelling():
                    raise asyncio.CancelledError
        self.add(name, every)

    def start(self) -> None:
        for name, factory in self._factories.items():
            self._tasks[name] = asyncio.create_task(self._run(name, factory), name=f"task:{name}")

    async def _run(self, name: str, factory: TaskFactory) -> None:
        state = self.states[name]
        delay = self._backoff
        while True:
            state.state = "running"
            state.last_started = time.monotonic()
            try:
                await factory()
                state.state = "finished"
                return
            except asyncio.CancelledError:
                state.state = "stopped"
                raise
            except Exception as exc:
                state.restarts += 1
                state.last_error = repr(exc)
                state.state = "backoff"
                self._metrics.task_restarts.labels(name).inc()
                log.error("task crashed; restarting", extra={"task": name, "error": repr(exc),
                                                             "retry_in_s": delay})
                # A task that ran for a while before crashing starts over at the shortest delay.
                if time.monotonic() - (state.last_started or 0) > 60:
                    delay = self._backoff
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)

    def healthy(self) -> bool:
        return all(s.state in ("running", "finished") for s in self.states.values())

    async def stop(self, grace_s: float = 5.0) -> None:
        """Cancel every task and wait for them; one that goes on after `grace_s` (its cancellation swallowed
        somewhere) is cancelled again, twice, then left behind with a warning rather than holding shutdown."""
        pending = {task for task in self._tasks.values() if not task.done()}
        for _ in range(3):
            if not pending:
                break
            for task in pending:
                task.cancel()
            done, pending = await asyncio.wait(pending, timeout=grace_s)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: a task's own failure was logged by _run already
        if pending:
            log.warning("tasks did not stop when cancelled", extra={"tasks": sorted(t.get_name() for t in pending)})
        for state in self.states.values():
            state.state = "stopped"


LAG_PROBE_S = 0.05


async def watch_loop_lag(observe: Callable[[float], None], interval_s: float = LAG_PROBE_S) -> None:
    """Observe how late the loop wakes a timer, forever: what every request waiting on the loop waits too (a
    stall by a CPU-bound step, a long collection, a thread holding the GIL)."""
    while True:
        due = time.perf_counter() + interval_s
        await asyncio.sleep(interval_s)
        observe(max(0.0, time.perf_counter() - due))
