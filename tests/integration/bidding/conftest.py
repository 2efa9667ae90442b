"""The bidder: the real app with the demo campaigns, called with an exchange key."""

import pytest

from tests.integration.bidding.helpers import _client


@pytest.fixture
async def bidder(aiohttp_client, tmp_path, clock):
    return await _client(aiohttp_client, tmp_path, clock)
