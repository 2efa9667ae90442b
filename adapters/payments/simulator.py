"""The card simulator: a payment gateway (app.retail.payments.PaymentGateway) that behaves like a card
processor's test mode, for the demo and the tests:
- 4242 4242 4242 4242  approved
- 4000 0000 0000 0002  declined: card_declined
- 4000 0000 0000 9995  declined: insufficient_funds
- 4000 0000 0000 0259  pending: its status says approved after `payments.simulator_settle_s` (the reconciliation
  sweep asks once the payment has been pending `payments.pending_timeout_s`), or sooner through
  POST /v1/webhooks/payments
- 4000 0000 0000 0119  slow: answers after the gateway timeout (the order stays PAYMENT_PENDING
  and is reconciled later)
Any other number that passes the Luhn check is approved.
"""

from __future__ import annotations

import asyncio

from app.retail.payments import ChargeResult
from app.runtime.clock import Clock
from app.runtime.lru import LRU

# Test card numbers with their outcomes; any other number that passes the Luhn check is approved.
DECLINES = {"4000000000000002": "card_declined", "4000000000009995": "insufficient_funds"}
PENDING_CARD = "4000000000000259"
SLOW_CARD = "4000000000000119"  # approved, after longer than payments.gateway_timeout_s

class CardSimulator:
    def __init__(self, clock: Clock, *, settle_s: float, slow_s: float) -> None:
        self._clock = clock
        self._settle_s = settle_s
        self._slow_s = slow_s
        # A real gateway keeps its payments for good; the simulator the latest million (a retry of an older one
        # would charge again).
        self.payments: LRU[str, tuple[ChargeResult, float]] = LRU(1_000_000, "card_simulator_payments")

    async def charge(self, payment_id: str, amount_cents: int, currency: str, card_number: str) -> ChargeResult:
        known = self.payments.get(payment_id)
        if known is not None:
            return known[0]
        if card_number == SLOW_CARD:
            self.payments.put(payment_id, (ChargeResult("approved"), self._clock.now()))
            await asyncio.sleep(self._slow_s)
        if card_number in DECLINES:
            result = ChargeResult("declined", DECLINES[card_number])
        elif card_number == PENDING_CARD:
            result = ChargeResult("pending")
        else:
            result = ChargeResult("approved")
        self.payments.put(payment_id, (result, self._clock.now()))
        return result

    async def status(self, payment_id: str) -> ChargeResult | None:
        known = self.payments.get(payment_id)
        if known is None:
            return None
        result, at = known
        if result.status == "pending" and self._clock.now() - at >= self._settle_s:
            result = ChargeResult("approved")
            self.payments.put(payment_id, (result, at))
        return result
