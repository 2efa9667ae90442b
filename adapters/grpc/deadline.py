"""A gRPC call's deadline, seen from the client as one kind of failure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from grpclib.const import Status
from grpclib.exceptions import GRPCError


@contextmanager
def deadline_is_timeout(what: str, timeout: float) -> Iterator[None]:
    """TimeoutError for a call past its deadline, whichever side noticed first: the client's own timer raises it, and
    a server that noticed first answers DEADLINE_EXCEEDED, which becomes it here (on a loaded machine either comes
    first)."""
    try:
        yield
    except GRPCError as exc:
        if exc.status == Status.DEADLINE_EXCEEDED:
            raise TimeoutError(f"{what} took longer than {timeout:.3f} s") from None
        raise
