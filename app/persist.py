"""Check in memory, then persist: the one way retail changes state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def commit_or_undo(write: Awaitable[T], undo: Callable[[], None]) -> T:
    """Await a durable write that follows an in-memory change; undo the change if the write fails.

    If the caller is cancelled while the write is in flight, the write still finishes (it may
    already be committing), and the undo runs only if it then fails: memory never drifts
    from what SQLite holds.
    """
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():
            if task.cancelled() or task.exception() is not None:
                undo()
        else:
            task.add_done_callback(lambda t: undo() if t.cancelled() or t.exception() is not None else None)
        raise
    except BaseException:
        undo()
        raise
