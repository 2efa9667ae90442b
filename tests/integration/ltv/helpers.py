"""Shared by the lifetime-value tests: a purchase history earned through loyalty."""

from __future__ import annotations

import asyncio

import numpy as np

DAY = 86_400.0
CUSTOMERS = 300


async def shop_history(platform, clock, customers: int = CUSTOMERS, days: int = 540, seed: int = 7) -> dict:
    """Customers buying at their own rate until they drop out, as loyalty earns (what orders, ingest and the POS
    do); the clock walks through the `days`. Returns each customer's purchase count."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.8, 1 / 25, customers)          # purchases a day
    life = rng.exponential(300, customers)             # days until they stop buying
    first = rng.uniform(0, days * 0.6, customers)
    events = []
    for c in range(customers):
        t = first[c]
        while t < min(first[c] + life[c], days):
            events.append((t, c, int(rng.gamma(2.0, 60) * 100) + 500))
            t += rng.exponential(1 / rate[c])
    by_day: dict[int, list[tuple[int, int]]] = {}
    for t, c, cents in sorted(events):
        by_day.setdefault(int(t), []).append((c, cents))
    start, counts = clock.now(), {}
    for day, bought in sorted(by_day.items()):  # a day's purchases together (one group commit)
        clock.advance(start + day * DAY - clock.now())
        await asyncio.gather(*(platform.loyalty.earn(f"cust-{c}", cents, "web" if c % 2 else "pos", f"t-{day}-{k}")
                               for k, (c, cents) in enumerate(bought)))
        for c, _ in bought:
            counts[f"cust-{c}"] = counts.get(f"cust-{c}", 0) + 1
    return counts
