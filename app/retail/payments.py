"""The payment gateway port, card checks and webhook signatures. The built-in card simulator, and its test
cards, is adapters/payments/simulator.py."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Literal, Protocol

import msgspec

from app.errors import InvalidInput


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


def checked_card(card_number: str, expires: tuple[int, int] | None, now: float) -> str:
    """The card number as charged (spaces and dashes dropped), once it passes the Luhn check and is not expired
    at `now` (`expires`: year and month); else InvalidInput saying which."""
    number = card_number.replace(" ", "").replace("-", "")
    if not luhn_valid(number):
        raise InvalidInput("card number is not valid (12 to 19 digits passing the Luhn check)")
    now_utc = time.gmtime(now)
    if expires is not None and expires < (now_utc.tm_year, now_utc.tm_mon):
        raise InvalidInput("the card has expired", {"field": "card.exp_year"})
    return number


def sign_webhook(secret: str, body: bytes) -> str:
    """The X-Contrail-Signature value for a webhook body: sha256=<hex HMAC-SHA256>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_signature_valid(secret: str, body: bytes, signature: str | None) -> bool:
    return signature is not None and hmac.compare_digest(sign_webhook(secret, body), signature.strip())
