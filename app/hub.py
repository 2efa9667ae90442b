"""Live fan-out of events to websocket subscribers, with a bounded queue per subscriber.

A slow subscriber loses its oldest messages (counted); one that stays behind for longer
than `max_lag_s` is told to disconnect. Publishing never blocks and never grows memory
beyond `queue_size` messages per subscriber.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode


class Subscription:
    """One subscriber's view of the hub."""

    def __init__(self, hub: Hub, stream: str, types: Iterable[str], queue_size: int) -> None:
        self._hub = hub
        self.stream = stream
        self.types: set[str] = set(types)
        self.queue: deque[str] = deque(maxlen=queue_size)
        self.dropped = 0
        self.behind_since: float | None = None
        self._drops_at_take = 0
        self.closed = False
        self._wake = asyncio.Event()

    def wants(self, event_type: str) -> bool:
        return not self.types or event_type in self.types or "*" in self.types

    def offer(self, message: str) -> bool:
        """Queue a message; returns False if an old one was dropped to make room."""
        dropped = len(self.queue) == self.queue.maxlen
        if dropped:
            self.dropped += 1
            if self.behind_since is None:
                self.behind_since = time.monotonic()
        self.queue.append(message)
        self._wake.set()
        return not dropped

    def lagging_for(self) -> float:
        return 0.0 if self.behind_since is None else time.monotonic() - self.behind_since

    async def next_batch(self, timeout: float | None = None) -> list[str]:
        """Wait for messages, then take all that are queued."""
        if not self.queue and not self.closed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        batch = list(self.queue)
        self.queue.clear()
        self._drops_at_take = self.dropped
        return batch

    def sent(self) -> None:
        """The last batch went out; if nothing was dropped meanwhile, the client has caught up."""
        if self.dropped == self._drops_at_take:
            self.behind_since = None

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def unsubscribe(self) -> None:
        self._hub._remove(self)


class Hub:
    """Publish/subscribe by event type for live views."""

    def __init__(self, queue_size: int, on_drop: Callable[[str], None] | None = None) -> None:
        self._queue_size = queue_size
        self._subs: list[Subscription] = []
        self._on_drop = on_drop
        self.closed = False
        self.shutting_down = asyncio.Event()  # for streams that subscribe to nothing (the bid socket) to end too

    def subscribe(self, stream: str, types: Iterable[str] = ()) -> Subscription:
        sub = Subscription(self, stream, types, self._queue_size)
        if self.closed:
            sub.close()
        self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def count(self, stream: str | None = None) -> int:
        return sum(1 for s in self._subs if stream is None or s.stream == stream)

    def publish_many(self, event_type: str, payloads: Iterable[Any], at: float | None = None) -> None:
        """publish() each payload; nothing to do, not even per payload, when nobody is subscribed."""
        if self._subs:
            for data in payloads:
                self.publish(event_type, data, at)

    def publish(self, event_type: str, data: Any, at: float | None = None) -> None:
        """Send to every interested subscriber; never blocks."""
        if not self._subs:
            return
        message: str | None = None
        for sub in self._subs:
            if sub.closed or not sub.wants(event_type):
                continue
            if message is None:
                message = _encode({"type": event_type, "at": at if at is not None else time.time(),
                                   "data": data}).decode()
            if not sub.offer(message) and self._on_drop is not None:
                self._on_drop(sub.stream)

    def close(self) -> None:
        """Ask every subscriber to finish; used at shutdown."""
        self.closed = True
        self.shutting_down.set()
        for sub in list(self._subs):
            sub.close()
