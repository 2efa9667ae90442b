"""The Redis client delivers a cancellation that the command it awaited swallowed."""

from __future__ import annotations

import asyncio

import pytest

from adapters.redis.client import RedisClient


async def _swallowing_command(started: asyncio.Event) -> str:
    # What redis-py's pipeline has done: catch the CancelledError mid-read and answer anyway.
    started.set()
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        pass
    return "OK"


async def test_a_cancelled_command_cancels_its_caller_even_if_the_library_swallowed_it() -> None:
    client = RedisClient("redis://127.0.0.1:1/0", "contrail", timeout_s=0.1, pool_size=1)
    started = asyncio.Event()
    carried_on = []

    async def caller() -> None:
        await client.run("GET", _swallowing_command(started))
        carried_on.append(True)  # the caller must not get here

    task = asyncio.create_task(caller())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert carried_on == []
    await client.close()


async def test_a_command_nobody_cancelled_answers_as_usual() -> None:
    client = RedisClient("redis://127.0.0.1:1/0", "contrail", timeout_s=0.1, pool_size=1)

    async def answer() -> str:
        return "OK"

    assert await client.run("GET", answer()) == "OK"
    assert client.available
    await client.close()
