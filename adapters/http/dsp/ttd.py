"""The Trade Desk (kind `ttd`).

Modelled, not certified against The Trade Desk: the endpoint is taken to speak OpenRTB 2.5, so each request is
sent as 2.5 (`x-openrtb-version: 2.5`) with the 2.6 fields moved to their 2.5 `ext` places, as Prebid Server does
for 2.5 bidders: `regs.gdpr` and `regs.us_privacy` to `regs.ext`, `user.consent` to `user.ext.consent`,
`source.schain` to `source.ext.schain`.
"""

from __future__ import annotations

from typing import Any

from adapters.http.dsp.openrtb import OpenRtbDsp

_MOVES = (("regs", "gdpr"), ("regs", "us_privacy"), ("user", "consent"), ("source", "schain"))


class TradeDeskDsp(OpenRtbDsp):
    kind = "ttd"
    openrtb_version = "2.5"

    def shape_request(self, request: dict[str, Any], timeout_ms: int) -> dict[str, Any]:
        body = {**request, "tmax": timeout_ms}
        for obj, key in _MOVES:
            part = body.get(obj)
            if isinstance(part, dict) and key in part:
                part = dict(part)
                ext = dict(part.get("ext") or {})
                ext[key] = part.pop(key)
                part["ext"] = ext
                body[obj] = part
        return body
