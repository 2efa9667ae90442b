"""The shop: the real app with a small catalog (on the retail tests' clock that starts the day)."""


import pytest

from app.main import PLATFORM
from tests.integration.retail.helpers import seed_catalog


@pytest.fixture
async def shop(client, clock):
    flight = await seed_catalog(client.app[PLATFORM], clock)
    return client, flight
