"""What DSP routing needs from the outside: one adapter per DSP (Prebid Server's bidder adapter shape: make the
HTTP requests from an OpenRTB request, read bids from the answers) and the store of wins."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from app.bidding.openrtb import Bid
from state.ports import DspWinStore

__all__ = ["DspAdapter", "DspBid", "DspError", "DspWinStore", "OutboundCall"]


class DspError(Exception):
    """A DSP's answer could not be used (an HTTP error, malformed JSON, a broken OpenRTB response)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OutboundCall:
    """One HTTP request to a DSP, as its adapter built it."""
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class DspBid:
    """One bid a DSP made: the OpenRTB bid as it came (price in `currency`, CPM), before adjustment and floors."""
    bid: Bid
    currency: str = "USD"
    ext: dict[str, Any] = field(default_factory=dict)


class DspAdapter(Protocol):
    """One DSP platform kind; its quirks stay inside its adapter."""

    kind: str

    def make_requests(self, request: dict[str, Any], timeout_ms: int) -> list[OutboundCall]:
        """The HTTP requests for an OpenRTB 2.6 request (as received, a JSON object), given the DSP `timeout_ms`."""
        ...

    def make_bids(self, request: dict[str, Any], status: int, body: bytes) -> list[DspBid]:
        """The bids in one answer; [] for a no-bid (204, or no seatbid); raises DspError when it cannot be read."""
        ...

    async def bid(self, request: dict[str, Any], timeout_ms: int) -> list[DspBid]:
        """make_requests, send them, make_bids from every answer (the caller bounds it with the DSP's deadline)."""
        ...

    async def notify(self, url: str, timeout_s: float) -> int:
        """GET a notice URL of the DSP's own (its nurl or burl, macros substituted); the HTTP status."""
        ...
