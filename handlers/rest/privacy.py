"""A customer's right to erasure: DELETE /v1/customers/{customer_id}."""

from __future__ import annotations

from aiohttp import web

from app.privacy import CustomerErasure, Erasure
from handlers.rest.common import endpoint, json_response


class PrivacyApi:
    def __init__(self, erasure: CustomerErasure) -> None:
        self._erasure = erasure

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_delete("/v1/customers/{customer_id}", self.erase)

    @endpoint("Erase a customer's personal data (GDPR article 17): the account can no longer sign in and its email "
              "is free again; contact details, profile, inbox and stored replies are deleted; mail, email events, "
              "analytics events and suppressions are anonymised; orders, payments and the loyalty ledger are kept. "
              "Admins erase anyone, customers themselves. Answers what was done; an erased customer is unknown "
              "(404) afterwards", tags=("privacy",), roles=("customer", "admin"), response=Erasure,
              errors=(403, 404))
    async def erase(self, request: web.Request, principal) -> web.Response:
        done = await self._erasure.erase(principal, request.match_info["customer_id"])
        return json_response(done)
