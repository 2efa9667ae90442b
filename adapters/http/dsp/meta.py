"""Meta Audience Network (kind `meta`).

Modelled, not certified against Meta, after Prebid Server's `audienceNetwork` adapter: each request carries
`ext.authentication_id`, the HMAC-SHA256 of the request id keyed with the app secret (`auth_token`, which is then
not sent as a header), and the `X-Fb-Pool-Routing-Token` header with the user's `buyeruid` when there is one.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from adapters.http.dsp.openrtb import OpenRtbDsp


class MetaDsp(OpenRtbDsp):
    kind = "meta"

    def auth_headers(self) -> dict[str, str]:
        return {self.platform.auth_header: self.platform.auth_token} if self.platform.auth_header else {}

    def shape_request(self, request: dict[str, Any], timeout_ms: int) -> dict[str, Any]:
        secret = self.platform.auth_token.encode()
        proof = hmac.new(secret, str(request.get("id", "")).encode(), hashlib.sha256).hexdigest()
        ext = request.get("ext")
        base = ext if isinstance(ext, dict) else {}
        return {**request, "tmax": timeout_ms, "ext": {**base, "authentication_id": proof}}

    def request_headers(self, request: dict[str, Any]) -> dict[str, str]:
        user = request.get("user")
        buyeruid = user.get("buyeruid") if isinstance(user, dict) else None
        if isinstance(buyeruid, str) and buyeruid:
            return {**self._headers, "X-Fb-Pool-Routing-Token": buyeruid}
        return self._headers
