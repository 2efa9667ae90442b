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
