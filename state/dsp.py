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
