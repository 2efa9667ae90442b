"""The background-task supervisor: crashes are restarted with backoff, counted, and reported."""

import asyncio
import itertools

from app.runtime.metrics import Metrics
from app.runtime.supervisor import Supervisor


async def test_crashing_task_is_restarted_with_growing_backoff_and_counted():
    metrics = Metrics()
    supervisor = Supervisor(metrics, backoff_s=0.01, backoff_max_s=0.04)
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(asyncio.get_running_loop().time())
        if len(starts) < 5:
            raise RuntimeError("boom")
        await asyncio.sleep(3600)

    supervisor.add("flaky", flaky)
    supervisor.start()
    for _ in range(200):
        if len(starts) >= 5:
            break
        await asyncio.sleep(0.01)
    state = supervisor.states["flaky"]
    assert len(starts) == 5 and state.restarts == 4 and state.state == "running"
    assert "boom" in state.last_error
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.01 and gaps[2] >= 0.04 * 0.9  # doubled, then held at the maximum
    assert b'contrail_task_restarts_total{task="flaky"} 4.0' in metrics.render()
    await supervisor.stop()
    assert state.state == "stopped"


async def test_a_task_whose_cancellation_is_swallowed_mid_tick_still_stops():
    """The scale-out suite once waited for ever at shutdown: redis-py's pipeline swallowed the cancellation of the
    periodic rate-limit sync, which then ticked on every 200 ms, and stop() waited for it."""
    supervisor = Supervisor(Metrics(), backoff_s=0.01, backoff_max_s=0.04)
    ticking = asyncio.Event()
    ticks = 0

    async def sync() -> None:  # a tick in a library call that, cancelled, returns as if it had finished
        nonlocal ticks
        ticks += 1
        ticking.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return

    async def stubborn() -> None:  # a task that swallows every cancellation but the third
        for _ in range(2):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
        await asyncio.sleep(3600)

    supervisor.add_periodic("sync", 0.01, sync)
    supervisor.add("stubborn", stubborn)
    supervisor.start()
    await asyncio.wait_for(ticking.wait(), 5)
    started = asyncio.get_running_loop().time()
    stopping = asyncio.create_task(supervisor.stop(grace_s=0.2))
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "stop() waits for a task that swallowed its cancellation"
    assert asyncio.get_running_loop().time() - started < 2 and ticks == 1  # no tick after the cancellation
    assert all(state.state == "stopped" for state in supervisor.states.values())
