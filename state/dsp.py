"""A win Contrail recorded for a bid a demand-side platform made through it: what the DSP spent."""

from __future__ import annotations

import msgspec


class DspWin(msgspec.Struct, frozen=True, gc=False):
    platform: str       # the DSP's configured name
    bid_id: str         # the bid's id in Contrail's answer (unique per bid; the DSP's own id is kept apart)
    cpm_micros: int     # the clearing CPM, micros of the bidding currency
    spend_micros: int   # what the impression cost: the CPM / 1000
    at: float           # when the win was recorded (the clock's seconds)
    source: str = "api"  # api (POST /v1/dsp/win), nurl or burl (the notice URLs in the answer)


class DspSpend(msgspec.Struct, frozen=True, gc=False):
    wins: int
    spend_micros: int


class RoutedBid(msgspec.Struct, frozen=True, gc=False):
    """A DSP's bid Contrail answered an exchange with, until it expires: what a notice for it is matched to."""
    platform: str
    bid_id: str                  # Contrail's id for it (in the notice URLs)
    dsp_bid_id: str              # the DSP's own id (its macros name it)
    request_id: str
    impid: str
    price: float                 # the CPM in the answer (bidding currency, adjusted)
    nurl: str | None             # the DSP's own notice URLs, called after the win is recorded
    burl: str | None
    expires_at: float
    campaign_id: str = ""        # the Contrail campaign whose DSP line item made it ("": none)


class DspForward(msgspec.Struct, frozen=True, gc=False):
    """One of a DSP's own notices to call for a recorded win (its nurl or burl, macros substituted): queued with the
    win, so it is called after a restart too, and retried while the DSP fails."""
    platform: str
    bid_id: str
    kind: str                    # nurl or burl
    url: str
    attempts: int = 0            # calls made so far
