"""Payment gateways behind one interface, and the built-in card simulator.

The simulator behaves like a card processor's test mode:
- 4242 4242 4242 4242  approved
- 4000 0000 0000 0002  declined: card_declined
- 4000 0000 0000 9995  declined: insufficient_funds
- 4000 0000 0000 0259  pending: settles as approved after `payments.simulator_settle_s`
  (or sooner through POST /v1/webhooks/payments)
- 4000 0000 0000 0119  slow: answers after the gateway timeout (the order stays PAYMENT_PENDING
  and is reconciled later)
Any other number that passes the Luhn check is approved.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Literal, Protocol

import msgspec

from app.runtime.clock import Clock

DECLINES = {"4000000000000002": "card_declined", "4000000000009995": "insufficient_funds"}
PENDING_CARD = "4000000000000259"
SLOW_CARD = "4000000000000119"


class ChargeResult(msgspec.Struct, frozen=True, gc=False):
    status: Literal["approved", "declined", "pending"]
    reason: str | None = None


class PaymentGateway(Protocol):
    async def charge(self, payment_id: str, amount_cents: int, currency: str, card_number: str) -> ChargeResult:
        """Charge a card once per payment id (a repeat returns the first result)."""

    async def status(self, payment_id: str) -> ChargeResult | None:
        """What the gateway knows of a payment, or None if it never saw it."""


def luhn_valid(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def sign_webhook(secret: str, body: bytes) -> str:
    """The X-Contrail-Signature value for a webhook body: sha256=<hex HMAC-SHA256>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_signature_valid(secret: str, body: bytes, signature: str | None) -> bool:
    return signature is not None and hmac.compare_digest(sign_webhook(secret, body), signature.strip())


class CardSimulator:
    def __init__(self, clock: Clock, *, settle_s: float, slow_s: float) -> None:
        self._clock = clock
        self._settle_s = settle_s
        self._slow_s = slow_s
        self._payments: dict[str, tuple[ChargeResult, float]] = {}

    async def charge(self, payment_id: str, amount_cents: int, currency: str, card_number: str) -> ChargeResult:
        known = self._payments.get(payment_id)
        if known is not None:
            return known[0]
        if card_number == SLOW_CARD:
            self._payments[payment_id] = (ChargeResult("approved"), self._clock.now())
            await asyncio.sleep(self._slow_s)
        if card_number in DECLINES:
            result = ChargeResult("declined", DECLINES[card_number])
        elif card_number == PENDING_CARD:
            result = ChargeResult("pending")
        else:
            result = ChargeResult("approved")
        self._payments[payment_id] = (result, self._clock.now())
        return result

    async def status(self, payment_id: str) -> ChargeResult | None:
        known = self._payments.get(payment_id)
        if known is None:
            return None
        result, at = known
        if result.status == "pending" and self._clock.now() - at >= self._settle_s:
            result = ChargeResult("approved")
            self._payments[payment_id] = (result, at)
        return result
