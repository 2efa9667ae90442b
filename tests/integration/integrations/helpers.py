"""What the integration tests share: a clock and sleep that move together without waiting, and a port nobody
listens on."""

from __future__ import annotations

import socket


class FakeTime:
    """Monotonic seconds that move only when something sleeps: a minute of rate limiting takes no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Sleeps:
    """A sleep that records what it was asked to wait and does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def closed_port() -> int:
    """A loopback port that was just free: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
