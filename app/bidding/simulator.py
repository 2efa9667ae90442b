"""Demo traffic: synthetic exchange requests and win/loss notices through the real pipeline.

Off by default (`demo.traffic_per_s = 0`); `make run` turns it on so the dashboard's live
stream shows bids, no-bids, wins and losses without an exchange attached.
"""

from __future__ import annotations

import asyncio
import random
from urllib.parse import parse_qs, urlsplit

import msgspec

from app.bidding.gateway import BidGateway
from app.bidding.notices import NoticeService
from app.errors import DomainError

SIZES = [(300, 250), (728, 90), (320, 50), (300, 600)]
COUNTRIES = ["PRT", "ESP", "GBR", "IRL", "FRA", "NLD"]


def synthetic_request(rng: random.Random, n: int) -> bytes:
    w, h = rng.choice(SIZES)
    return msgspec.json.encode({
        "id": f"sim-{n}", "tmax": 120, "cur": ["USD"],
        "imp": [{"id": "1", "bidfloor": round(rng.uniform(0.2, 6.0), 2), "banner": {"w": w, "h": h}}],
        "site": {"id": "sim-site", "domain": "travel-news.example"},
        "device": {"devicetype": rng.choice([1, 2, 4]), "geo": {"country": rng.choice(COUNTRIES)}},
        "user": {"id": f"sim-user-{rng.randrange(5000)}"}})


async def run_traffic(gateway: BidGateway, notices: NoticeService, per_second: float, seed: int = 1) -> None:
    """Send `per_second` requests forever; about a third of the bids win, a third lose."""
    rng = random.Random(seed)
    n = 0
    while True:
        await asyncio.sleep(1.0 / per_second)
        n += 1
        answer = await gateway.answer(synthetic_request(rng, n), "simulator")
        response = answer.outcome.response if answer.outcome else None
        if response is None or not response.seatbid:
            continue
        bid = response.seatbid[0].bid[0]
        fate = rng.random()
        try:
            if fate < 0.35:
                await notices.win(bid.id, f"{bid.price * rng.uniform(0.6, 1.0):.4f}")
            elif fate < 0.7:
                reason = parse_qs(urlsplit(bid.lurl or "").query).get("reason", ["102"])[0]
                await notices.loss(bid.id, "102" if reason.startswith("${") else reason, None)
        except DomainError:
            pass  # e.g. a bid that expired meanwhile: the simulator just moves on
