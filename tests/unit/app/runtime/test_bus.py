"""The domain event bus: direct subscribers run in order and are awaited; one failing never stops the others;
queued subscribers lag behind through a bounded queue that, when full, drops and counts or makes the publisher wait."""

import asyncio
from dataclasses import dataclass

from app.runtime.bus import Bus


@dataclass(frozen=True)
class Paid:
    order_id: str


@dataclass(frozen=True)
class Cancelled:
    order_id: str


async def test_direct_subscribers_run_in_order_and_are_awaited_by_the_publisher():
    bus, seen = Bus(), []

    async def earn(event: Paid) -> None:
        await asyncio.sleep(0)
        seen.append(("earn", event.order_id))

    bus.subscribe(Paid, lambda e: seen.append(("count", e.order_id)))
    bus.subscribe(Paid, earn)
    bus.subscribe(Cancelled, lambda e: seen.append(("reverse", e.order_id)))
    await bus.publish(Paid("o1"))
    assert seen == [("count", "o1"), ("earn", "o1")]  # done when publish returns
    await bus.publish(Cancelled("o1"))
    assert seen[-1] == ("reverse", "o1")


async def test_a_failing_subscriber_is_counted_and_the_others_still_run():
    bus, seen = Bus(), []

    def broken(event: Paid) -> None:
        raise RuntimeError("no")

    bus.subscribe(Paid, broken)
    bus.subscribe(Paid, lambda e: seen.append(e.order_id))
    await bus.publish(Paid("o2"))
    assert seen == ["o2"] and bus.failures == 1


async def test_queued_subscribers_lag_behind_and_a_full_queue_drops_and_counts():
    bus, seen = Bus(), []
    bus.subscribe_queued(Paid, "webhooks", lambda e: seen.append(e.order_id), capacity=2)
    for i in range(5):
        await bus.publish(Paid(f"o{i}"))
    assert seen == [] and bus.dropped == 3  # nothing waits for the queue, nothing blocks the publisher
    [(name, drain)] = bus.drains()
    assert name == "bus:webhooks"
    task = asyncio.create_task(drain())
    await asyncio.sleep(0.01)
    task.cancel()
    assert seen == ["o0", "o1"]


async def test_a_subscriber_that_must_not_lose_events_makes_the_publisher_wait_for_room():
    bus, seen = Bus(), []
    bus.subscribe_queued(Paid, "learning", lambda e: seen.append(e.order_id), capacity=2, when_full="wait")
    await bus.publish(Paid("o0"))
    await bus.publish(Paid("o1"))
    third = asyncio.create_task(bus.publish(Paid("o2")))
    await asyncio.sleep(0.01)
    assert not third.done()  # the queue is full: the publisher waits
    [(_, drain)] = bus.drains()
    task = asyncio.create_task(drain())
    await asyncio.wait_for(third, 1)
    await bus.idle()
    task.cancel()
    assert seen == ["o0", "o1", "o2"] and bus.dropped == 0
