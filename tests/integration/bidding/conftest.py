"""The bidder: the real app with the demo campaigns, called with an exchange key."""

import pytest
from grpclib.client import Channel

from app.main import GRPC
from handlers.rpc import bidding_grpc
from tests.integration.bidding.helpers import _client


@pytest.fixture
async def bidder(aiohttp_client, tmp_path, clock):
    return await _client(aiohttp_client, tmp_path, clock)


@pytest.fixture
async def stub(bidder):
    """A BiddingService stub to the bidder's gRPC port, and the exchange key's metadata."""
    channel = Channel("127.0.0.1", bidder.app[GRPC].port)
    yield bidding_grpc.BiddingServiceStub(channel), {"x-api-key": bidder.headers["X-Api-Key"]}
    channel.close()
