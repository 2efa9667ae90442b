"""The shop: the real app with a small catalog, on a clock that starts the day."""

import time

import pytest

from app.main import PLATFORM
from app.runtime.clock import ManualClock
from tests.integration.retail.helpers import DAY, seed_catalog


@pytest.fixture
def clock() -> ManualClock:
    """The start of today (UTC): these tests move the clock on by hours and find the flight by the date the
    clock gives, so they must not cross midnight on their own. (Not later than now: tokens are issued on it.)"""
    return ManualClock(time.time() // DAY * DAY)


@pytest.fixture
async def shop(client, clock):
    flight = await seed_catalog(client.app[PLATFORM], clock)
    return client, flight
