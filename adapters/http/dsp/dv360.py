"""Google Display & Video 360 (kind `dv360`).

Modelled, not certified against Google: Google's real-time bidding protocols count money in micros (the
Authorized Buyers protocol's `max_cpm_micros`). This adapter models a DV360 endpoint that answers OpenRTB with each
bid's CPM in micros in `bid.ext.google.max_cpm_micros`, and reads `price` only when that is absent. Auth is the
generic one (an OAuth access token as `Authorization: Bearer`).
"""

from __future__ import annotations

from adapters.http.dsp.openrtb import OpenRtbDsp, _Bid


class Dv360Dsp(OpenRtbDsp):
    kind = "dv360"

    def read_price(self, bid: _Bid) -> float:
        google = (bid.ext or {}).get("google")
        micros = google.get("max_cpm_micros") if isinstance(google, dict) else None
        if isinstance(micros, int | float) and not isinstance(micros, bool):
            return micros / 1_000_000
        return bid.price
