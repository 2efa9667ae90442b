"""Activation: reach a customer over the best channel they can be reached on, within a daily cap.

Cascade: in-store when the customer is present, then their preferred channel, push if they
have a token, in-app, SMS if they have a phone, email if they have an address, web
personalisation, paid media. A channel is only tried when the customer can be reached on it
and a sender for it exists (email, in-app, in-store and web are built in; push, SMS and paid
media need their provider URLs); the suppression list is checked before every send.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from app import ids
from app.channels.email import EmailService
from app.channels.inapp import InAppService
from app.channels.ports import ProviderError, Providers
from app.channels.suppression import SuppressionService
from app.errors import InvalidInput
from app.runtime.clock import Clock
from state.ports import ActivationCountStore


def _utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


CASCADE = ("in_store", "preferred", "push", "in_app", "sms", "email", "web", "paid_media")
# Suppression list channel for each activation channel (in-app and paid media answer to "all" entries only).
_SUPPRESSION_CHANNEL = {"email": "email", "sms": "sms", "push": "push"}


class ActivationService:
    def __init__(self, config, members, email: EmailService, inapp: InAppService, adaptors: Providers,
                 suppression: SuppressionService, counts: ActivationCountStore, clock: Clock, log_event,
                 seen_on_web: Callable[[str], bool]) -> None:
        self._config = config
        self._members = members  # user_id -> Member (contact details, preferred channel) or None
        self._email = email
        self._inapp = inapp
        self._adaptors = adaptors
        self._suppression = suppression
        self._clock = clock
        self._log_event = log_event
        self._counts = counts
        self._seen_on_web = seen_on_web  # user id -> recently on the website
        self._day = ""
        self._day_start = float("-inf")  # the UTC midnight that began self._day, once known
        self._sent_today: dict[str, int] = defaultdict(int)  # today's activations per customer

    async def load(self) -> None:
        self._day = _utc_day(self._clock.now())
        self._sent_today = defaultdict(int, await self._counts.counts(self._day))

    def _channels(self, user_id: str, member, present: bool) -> list[str]:
        order = []
        for step in CASCADE:
            channel = member.preferred_channel if step == "preferred" and member else step
            if channel and channel not in order and self._reachable(channel, user_id, member, present):
                order.append(channel)
        return order

    def _reachable(self, channel: str, user_id: str, member, present: bool) -> bool:
        if channel == "email":
            return bool(member and member.email)
        if channel == "in_store":
            return present  # the in-store offer goes to the app the customer has with them
        if channel == "in_app":
            # Someone with the app: connected now, a push token, or in-app as their preferred channel.
            return self._inapp.connected(user_id) or bool(member and (member.push_token
                                                                      or member.preferred_channel == "in_app"))
        if channel == "push":
            return bool(member and member.push_token) and self._adaptors.configured("push")
        if channel == "sms":
            return bool(member and member.phone) and self._adaptors.configured("sms")
        if channel == "paid_media":
            return self._adaptors.configured("paid_media")
        if channel == "web":
            return self._seen_on_web(user_id)
        return False

    async def _send(self, channel: str, user_id: str, member, activation_id: str, subject: str, text: str,
                    html: str | None) -> tuple[str, str | None]:
        """(status, provider message id) for one channel."""
        if channel == "email":
            queued = await self._email.enqueue(member.email, subject, text, html, activation_id=activation_id,
                                               user_id=user_id)
            return ("queued" if queued.state == "pending" else queued.state), queued.id
        if channel in ("in_app", "in_store", "web"):  # the website shows the same inbox on the next page view
            delivered = await self._inapp.deliver(user_id, subject, text, activation_id)
            return "delivered", delivered.id
        to = member.push_token if channel == "push" else member.phone if channel == "sms" and member else user_id
        try:
            return "sent", await self._adaptors.send(channel, {"activation_id": activation_id, "to": to,
                                                               "user_id": user_id, "title": subject, "text": text})
        except ProviderError:
            return "failed", None

    def _today(self) -> str:
        now = self._clock.now()
        if not self._day_start <= now < self._day_start + 86_400:
            self._day_start = now - now % 86_400
            day = _utc_day(now)
            if day != self._day:
                self._day, self._sent_today = day, defaultdict(int)
        return self._day

    def capped(self, user_id: str) -> bool:
        """Whether the customer has had today's `max_per_customer_per_day` activations already."""
        self._today()
        return self._sent_today.get(user_id, 0) >= self._config.max_per_customer_per_day

    async def activate(self, user_id: str, subject: str, text: str, html: str | None = None,
                       channel: str | None = None, present: bool = False, campaign: str | None = None) -> dict:
        if not user_id or len(user_id) > 128:
            raise InvalidInput("user_id must be 1 to 128 characters")
        activation_id = f"act_{ids.token_hex(10)}"
        member = self._members(user_id)
        day = self._today()
        result = {"activation_id": activation_id, "channel": None, "status": "unreachable",
                  "provider_message_id": None}
        if self.capped(user_id):
            result["status"] = "capped"
        else:
            # The slot is taken before the first await, so concurrent activations cannot pass the cap together.
            self._sent_today[user_id] += 1
            sent = False
            try:
                candidates = [channel] if channel else self._channels(user_id, member, present)
                for ch in candidates:
                    if not self._reachable(ch, user_id, member, present):
                        continue
                    identifiers = [user_id, *((member.email, member.phone, member.push_token) if member else ())]
                    if self._suppression.is_suppressed(identifiers, _SUPPRESSION_CHANNEL.get(ch, ch)) is not None:
                        result.update(channel=ch, status="suppressed")
                        continue
                    status, provider_id = await self._send(ch, user_id, member, activation_id, subject, text, html)
                    result.update(channel=ch, status=status, provider_message_id=provider_id)
                    if status in ("queued", "delivered", "sent"):
                        sent = True
                        await self._counts.add_one(user_id, day)
                        break
            finally:
                if not sent:
                    self._sent_today[user_id] -= 1  # nothing went out: give the slot back
        self._log_event("Activation", {**result, "user_id": user_id, "campaign": campaign})
        return result
