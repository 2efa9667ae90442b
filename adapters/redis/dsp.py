"""The bids Contrail answered exchanges with on behalf of DSPs, shared by every node in Redis (the shared DSP bids
port): `dspbid:{platform}:{bid_id}` until the bid expires, so a win or billing notice is accepted by any node. (The
DSP's own notices are queued in the shared store with the win, and called by one node: app/dsp/wins.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import msgspec

from adapters.redis.client import RedisClient
from state.dsp import RoutedBid

_decode = msgspec.msgpack.Decoder(RoutedBid).decode


class RedisDspBids:
    def __init__(self, client: RedisClient, clock: Callable[[], float] = time.time) -> None:
        self._r = client
        self._now = clock

    async def remember(self, bids: Sequence[RoutedBid]) -> None:
        now = self._now()
        pipe = self._r.redis.pipeline(transaction=False)
        for bid in bids:
            pipe.set(self._r.key("dspbid", bid.platform, bid.bid_id), msgspec.msgpack.encode(bid),
                     px=max(1, int((bid.expires_at - now) * 1000)))
        await self._r.run("dsp bids", pipe.execute())

    async def find(self, platform: str, bid_id: str) -> RoutedBid | None:
        raw = await self._r.run("dsp bids", self._r.redis.get(self._r.key("dspbid", platform, bid_id)))
        if not isinstance(raw, bytes):
            return None
        bid = _decode(raw)
        return bid if bid.expires_at > self._now() else None

