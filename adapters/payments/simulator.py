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

Like a real gateway it keeps its record of every payment, in its own table (`card_simulator_payments`) of the
database the nodes share: a payment one process charged is known to every other (the demo's seed and the server,
two nodes), and a retry of any payment id gets the first answer.
"""

from __future__ import annotations

import asyncio

import msgspec

from adapters.sqlite.statements import SqlDatabase
from app.retail.payments import ChargeResult
from app.runtime.clock import Clock

# Test card numbers with their outcomes; any other number that passes the Luhn check is approved.
DECLINES = {"4000000000000002": "card_declined", "4000000000009995": "insufficient_funds"}
PENDING_CARD = "4000000000000259"
SLOW_CARD = "4000000000000119"  # approved, after longer than payments.gateway_timeout_s

_RECORD = ("INSERT INTO card_simulator_payments(payment_id, status, reason, at) VALUES (?,?,?,?) "
           "ON CONFLICT(payment_id) DO NOTHING")


class CardSimulator:
    def __init__(self, db: SqlDatabase, clock: Clock, *, settle_s: float, slow_s: float) -> None:
        self._db = db
        self._clock = clock
        self._settle_s = settle_s
        self._slow_s = slow_s

    async def charge(self, payment_id: str, amount_cents: int, currency: str, card_number: str) -> ChargeResult:
        known = await self._read(payment_id)
        if known is not None:
            return known[0]
        if card_number == SLOW_CARD:
            await self._record(payment_id, ChargeResult("approved"))
            await asyncio.sleep(self._slow_s)
            return ChargeResult("approved")
        if card_number in DECLINES:
            result = ChargeResult("declined", DECLINES[card_number])
        elif card_number == PENDING_CARD:
            result = ChargeResult("pending")
        else:
            result = ChargeResult("approved")
        return await self._record(payment_id, result)

    async def status(self, payment_id: str) -> ChargeResult | None:
        known = await self._read(payment_id)
        if known is None:
            return None
        result, at = known
        if result.status == "pending" and self._clock.now() - at >= self._settle_s:
            result = ChargeResult("approved")
            await self._db.write([("UPDATE card_simulator_payments SET status = 'approved' WHERE payment_id = ?",
                                   (payment_id,))])
        return result

    async def _record(self, payment_id: str, result: ChargeResult) -> ChargeResult:
        """Keep the payment's first answer: when two charges of one id race, both get the one stored first."""
        await self._db.write([(_RECORD, (payment_id, result.status, result.reason, self._clock.now()))])
        stored = await self._read(payment_id)
        return stored[0] if stored is not None else result

    async def _read(self, payment_id: str) -> tuple[ChargeResult, float] | None:
        row = await self._db.fetchone("SELECT status, reason, at FROM card_simulator_payments WHERE payment_id = ?",
                                      (payment_id,))
        if row is None:
            return None
        return msgspec.convert({"status": row[0], "reason": row[1]}, ChargeResult), float(row[2])
