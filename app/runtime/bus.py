"""The domain event bus: how one domain's facts reach the others without hooks set after construction.

A domain publishes a typed event (`OrderPaid`, `BidWon`, ...) after the change it reports is
committed. Two kinds of subscriber:

- direct: run during `publish`, in subscription order; the publisher awaits them. For effects that
  belong with the change (stars earned for a paid order, before the payment is answered). A
  failing subscriber is logged and counted; the publisher and the other subscribers go on (its
  change already stands; the subscriber's own idempotency lets it be retried).
- queued: handed the event through a bounded queue that a supervised task drains, for work that
  may lag (webhooks, streams, learning). When the queue is full, a subscriber that may lose events
  has the event dropped and counted, never blocking the publisher; one that must not lose them
  (`when_full="wait"`) makes the publisher wait for room: back-pressure instead of loss.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

log = logging.getLogger("contrail.bus")

E = TypeVar("E")
Handler = Callable[[Any], Awaitable[None] | None]


class Bus:
    def __init__(self, metrics: Any = None) -> None:
        self._direct: dict[type, list[Handler]] = defaultdict(list)
        self._queues: dict[type, list[tuple[asyncio.Queue[Any], bool]]] = defaultdict(list)  # (queue, waits)
        self._drains: list[tuple[str, asyncio.Queue[Any], Handler]] = []
        self.failures = 0
        self.dropped = 0
        if metrics is not None:
            self._failed = metrics.bus_failures
            self._dropped = metrics.bus_dropped
        else:
            self._failed = self._dropped = None

    def subscribe(self, event_type: type[E], handler: Callable[[E], Awaitable[None] | None]) -> None:
        """Run `handler` (a function or a coroutine function) during every publish of `event_type`."""
        self._direct[event_type].append(handler)

    def subscribe_queued(self, event_type: type[E], name: str, handler: Callable[[E], Awaitable[None] | None],
                         capacity: int = 10_000, when_full: Literal["drop", "wait"] = "drop") -> None:
        """Hand `event_type` events to `handler` through a bounded queue; `drains()` names its task."""
        queue: asyncio.Queue[Any] = asyncio.Queue(capacity)
        self._queues[event_type].append((queue, when_full == "wait"))
        self._drains.append((name, queue, handler))

    async def publish(self, event: Any) -> None:
        """Deliver `event` to the direct subscribers of its type (awaited), then queue it for the rest."""
        for handler in self._direct.get(type(event), ()):
            await self._deliver(handler, event)
        for queue, wait in self._queues.get(type(event), ()):
            if wait:
                await queue.put(event)
                continue
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1
                if self._dropped is not None:
                    self._dropped.labels(type(event).__name__).inc()

    def drains(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """(task name, coroutine factory) for each queued subscriber, for the supervisor to run."""
        return [(f"bus:{name}", functools.partial(self._drain, queue, handler))
                for name, queue, handler in self._drains]

    def depths(self) -> list[tuple[str, Callable[[], int]]]:
        """(subscriber name, its queue's depth) for each queued subscriber, for the metrics."""
        return [(name, queue.qsize) for name, queue, _ in self._drains]

    async def idle(self) -> None:
        """Wait until every queued subscriber has handled everything published so far (tests, shutdown)."""
        await asyncio.gather(*(queue.join() for _, queue, _ in self._drains))

    async def _drain(self, queue: asyncio.Queue[Any], handler: Handler) -> None:
        while True:
            event = await queue.get()
            try:
                await self._deliver(handler, event)
            finally:
                queue.task_done()

    async def _deliver(self, handler: Handler, event: Any) -> None:
        """Run one subscriber; its failure is logged and counted, never the publisher's."""
        try:
            result = handler(event)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            self.failures += 1
            name = getattr(handler, "__qualname__", repr(handler))
            if self._failed is not None:
                self._failed.labels(type(event).__name__).inc()
            log.error("event subscriber failed", extra={"event": type(event).__name__, "subscriber": name,
                                                         "error": repr(exc)[:300]})
