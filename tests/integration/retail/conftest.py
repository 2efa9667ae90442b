"""Retail tests run on a clock that starts the day."""

import time

import pytest

from app.runtime.clock import ManualClock
from tests.integration.retail.helpers import DAY


@pytest.fixture
def clock() -> ManualClock:
    """The start of today (UTC): these tests move the clock on by hours and find flights by the date the clock
    gives, so they must not cross midnight on their own. (Not later than now: tokens are issued on it.)"""
    return ManualClock(time.time() // DAY * DAY)
