"""Amazon DSP (kind `amazon`).

Modelled, not certified against Amazon: the endpoint takes its key in an `x-api-key` header (the default here when
`auth_header` is empty), buys in US dollars only (every request says `cur: ["USD"]`), and answers without `cur`
(read as USD, OpenRTB's default).
"""

from __future__ import annotations

from typing import Any

from adapters.http.dsp.openrtb import OpenRtbDsp


class AmazonDsp(OpenRtbDsp):
    kind = "amazon"

    def auth_headers(self) -> dict[str, str]:
        p = self.platform
        return {p.auth_header or "x-api-key": p.auth_token} if p.auth_token else {}

    def shape_request(self, request: dict[str, Any], timeout_ms: int) -> dict[str, Any]:
        return {**request, "tmax": timeout_ms, "cur": ["USD"]}
