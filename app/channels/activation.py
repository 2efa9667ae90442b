"""Activation: reach a customer over the best channel they can be reached on, within a daily cap.

Cascade: in-store when the customer is present, then their preferred channel, push if they
have a token, in-app, SMS if they have a phone, email if they have an address, web
personalisation, paid media. A channel is only tried when a sender for it is configured
(email is built in); the suppression list is checked before every send.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict

from app.channels.email import EmailService
from app.channels.suppression import SuppressionService
from app.errors import InvalidInput
from state.clock import Clock

CASCADE = ("in_store", "preferred", "push", "in_app", "sms", "email", "web", "paid_media")


class ActivationService:
    def __init__(self, config, members, email: EmailService, suppression: SuppressionService, clock: Clock,
                 log_event) -> None:
        self._config = config
        self._members = members  # user_id -> Member (contact details, preferred channel) or None
        self._email = email
        self._suppression = suppression
        self._clock = clock
        self._log_event = log_event
        self._sent_today: dict[tuple[str, str], int] = defaultdict(int)

    def _channels(self, member, present: bool) -> list[str]:
        order = []
        for step in CASCADE:
            channel = member.preferred_channel if step == "preferred" and member else step
            if channel and channel not in order and self._reachable(channel, member, present):
                order.append(channel)
        return order

    @staticmethod
    def _reachable(channel: str, member, present: bool) -> bool:
        if channel == "email":
            return bool(member and member.email)
        return False  # in-store, push, in-app, SMS, web and paid media senders are not configured

    async def activate(self, user_id: str, subject: str, text: str, html: str | None = None,
                       channel: str | None = None, present: bool = False, campaign: str | None = None) -> dict:
        if not user_id or len(user_id) > 128:
            raise InvalidInput("user_id must be 1 to 128 characters")
        activation_id = f"act_{secrets.token_hex(10)}"
        member = self._members(user_id)
        day = time.strftime("%Y-%m-%d", time.gmtime(self._clock.now()))
        result = {"activation_id": activation_id, "channel": None, "status": "unreachable",
                  "provider_message_id": None}
        if self._sent_today[(user_id, day)] >= self._config.max_per_customer_per_day:
            result["status"] = "capped"
        else:
            candidates = [channel] if channel else self._channels(member, present)
            for ch in candidates:
                if not self._reachable(ch, member, present):
                    continue
                if self._suppression.is_suppressed([user_id, member.email if member else None], ch) is not None:
                    result.update(channel=ch, status="suppressed")
                    continue
                message = await self._email.enqueue(member.email, subject, text, html, activation_id=activation_id,
                                                    user_id=user_id)
                result.update(channel=ch, status="queued" if message.state == "pending" else message.state,
                              provider_message_id=message.id)
                if message.state == "pending":
                    self._sent_today[(user_id, day)] += 1
                break
        self._log_event("Activation", {**result, "user_id": user_id, "campaign": campaign})
        return result
