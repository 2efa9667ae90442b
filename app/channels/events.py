"""What channels tell the other domains, on the bus: the customer events ingest accepted."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CustomerEvent:
    """One accepted event, as the other domains need it (its time is the event's `at`)."""
    user_id: str
    type: str
    product_id: str | None
    category: str | None
    at: float


@dataclass(frozen=True, slots=True)
class CustomerEventsIngested:
    """A batch of events ingest accepted; published (and awaited) before ingest answers."""
    events: tuple[CustomerEvent, ...]
    # time.perf_counter() when ingest accepted it: a queued subscriber's lag counts from here, its wait included
    accepted_at: float = field(default_factory=time.perf_counter)
