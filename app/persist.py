"""Check in memory, then persist: the one way retail changes state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.errors import Conflict
from state.ports import Transaction, UnitOfWork, WriteConflict

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


def _nothing() -> None:
    pass


class atomically:  # noqa: N801 - used as `async with atomically(uow, undo) as tx:`
    """One domain operation's writes as one transaction: `async with atomically(uow, undo) as tx:` begins it,
    the block makes its writes on `tx`, and leaving the block commits it (as commit_or_undo does). If the
    block raises or the commit fails, `undo` puts the in-memory change back. A class, not a generator: this
    is on the search and order paths."""

    __slots__ = ("_tx", "_undo", "_power_safe")

    def __init__(self, uow: UnitOfWork, undo: Callable[[], None] = _nothing, *, power_safe: bool = True) -> None:
        self._tx = uow.begin()
        self._undo = undo
        self._power_safe = power_safe

    async def __aenter__(self) -> Transaction:
        return self._tx

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is not None:
            self._undo()
            return
        try:
            await commit_or_undo(self._tx.commit(power_safe=self._power_safe), self._undo)
        except WriteConflict as exc:  # another node got there first (one node's memory checks make this rare)
            raise _conflict(exc) from None


def _conflict(exc: WriteConflict) -> Conflict:
    kind, _, resource = exc.what.partition(":")
    if kind == "inventory":
        return Conflict("not enough inventory left; search again", {"sold_out": [resource]})
    return Conflict("this changed meanwhile; try again")
