"""Activation: reach a customer over the best channel they can be reached on, within a daily cap.

Cascade: in-store when the customer is present, then their preferred channel, push if they
have a token, in-app, SMS if they have a phone, email if they have an address, web
personalisation, paid media. A channel is only tried when the customer can be reached on it
and a sender for it exists (email, in-app, in-store and web are built in; push, SMS and paid
media need their provider URLs); the suppression list is checked before every send.

A customer with recommendations finds their top few recommended items at the end of an email (text and
HTML) and of an in-app message: destinations as links to the console's shop, ancillaries by name.
"""

from __future__ import annotations

import html as html_lib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Protocol, get_args

from app import ids
from app.channels.email import EmailService
from app.channels.inapp import InAppService
from app.channels.ports import ProviderError, Providers
from app.channels.suppression import SuppressionService
from app.errors import Conflict, InvalidInput, NotFound
from app.runtime.clock import Clock
from state.campaigns import ActivationChannel
from state.loyalty import Member
from state.ports import ActivationCountStore

log = logging.getLogger("contrail.channels")

RECOMMENDED_IN_MESSAGE = 3  # recommended items appended to a message
_RECOMMENDED_ASKED = 5  # asked for: the personalized list ends with an exploratory item, kept out of the top three


class Recommendations(Protocol):
    """What activation needs of the recommendation engine (app.reco.service.RecoService is one)."""

    async def recommend(self, user_id: str, strategy: str = "personalized", n: int = 10,
                        categories: list[str] | None = None, exclude: list[str] | None = None) -> dict: ...


class CustomerValue(Protocol):
    """What activation needs of lifetime value (app.ltv.service.LtvService is one): a customer's predicted value,
    None when it cannot be predicted."""

    async def value(self, customer_id: str) -> float | None: ...


def _utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


CASCADE = ("in_store", "preferred", "push", "in_app", "sms", "email", "web", "paid_media")
# The channels whose messages carry recommended items (push and SMS stay short; paid media is not a message).
ACTIVATION_CHANNELS = frozenset(get_args(ActivationChannel))  # a campaign's channels that activation may use
_CARRIES_RECOMMENDED = frozenset({"email", "in_app", "in_store", "web"})
# Suppression list channel for each activation channel (in-app and paid media answer to "all" entries only).
_SUPPRESSION_CHANNEL = {"email": "email", "sms": "sms", "push": "push"}


class ActivationService:
    def __init__(self, config, members: Callable[[str], Awaitable[Member | None]], email: EmailService,
                 inapp: InAppService, adaptors: Providers,
                 suppression: SuppressionService, counts: ActivationCountStore, clock: Clock, log_event,
                 seen_on_web: Callable[[str], bool], recommendations: Recommendations | None = None,
                 product_name: Callable[[str], str | None] = lambda _: None,
                 shop_base: Callable[[], str] = lambda: "", customer_value: CustomerValue | None = None,
                 campaign_state: Callable[[str], Awaitable[tuple[str, list[str]] | None]] | None = None) -> None:
        self._config = config
        # A campaign's workflow state and the channels it was approved for (None: no such campaign).
        self._campaign_state = campaign_state
        self._customer_value = customer_value
        self._recommendations = recommendations
        self._product_name = product_name  # a catalog product id -> its name (None: not a product on sale)
        self._shop_base = shop_base  # where the console is served: the shop's links start there
        self._members = members  # user_id -> Member (contact details, preferred channel) or None, held or read
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
                    html: str | None, campaign_id: str | None = None) -> tuple[str, str | None]:
        """(status, provider message id) for one channel."""
        if channel == "email":
            queued = await self._email.enqueue(member.email, subject, text, html, activation_id=activation_id,
                                               user_id=user_id, campaign_id=campaign_id)
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

    async def recommended(self, user_id: str) -> list[tuple[str, str, str | None]]:
        """The customer's top recommended destinations and ancillaries as (item id, label, link or None): none
        for someone without history (their list would only be what is popular) or when the engine fails."""
        if self._recommendations is None:
            return []
        try:
            answer = await self._recommendations.recommend(user_id, "personalized", _RECOMMENDED_ASKED,
                                                           ["destination", "ancillary"])
        except Exception as exc:  # recommendations are an extra: the message goes out without them
            log.warning("no recommendations for an activation", extra={"error": repr(exc)[:200]})
            return []
        if answer.get("model") == "popular":
            return []
        out: list[tuple[str, str, str | None]] = []
        for entry in answer.get("items", ()):
            item_id = entry["item_id"]
            if item_id.startswith("dest-") and len(item_id) > 5:
                airport = item_id[5:]
                out.append((item_id, f"Flights to {airport}",
                            f"{self._shop_base().rstrip('/')}/#/shop?destination={airport}"))
            elif (name := self._product_name(item_id)) is not None:
                out.append((item_id, name, None))
            if len(out) == RECOMMENDED_IN_MESSAGE:
                break
        return out

    def _today(self) -> str:
        now = self._clock.now()
        if not self._day_start <= now < self._day_start + 86_400:
            self._day_start = now - now % 86_400
            day = _utc_day(now)
            if day != self._day:
                self._day, self._sent_today = day, defaultdict(int)
        return self._day

    @property
    def counted_today(self) -> int:
        """Customers with an activation sent today (held until the UTC day turns)."""
        return len(self._sent_today)

    def capped(self, user_id: str) -> bool:
        """Whether the customer has had today's `max_per_customer_per_day` activations already."""
        self._today()
        return self._sent_today.get(user_id, 0) >= self._config.max_per_customer_per_day

    async def activate(self, user_id: str, subject: str, text: str, html: str | None = None,
                       channel: str | None = None, present: bool = False, campaign: str | None = None,
                       ltv_band: tuple[float | None, float | None] = (None, None),
                       campaign_id: str | None = None) -> dict:
        """Reach the customer; with an `ltv_band` (lowest, highest predicted lifetime value, either None for open),
        only when their predicted value is inside it (`outside_ltv_band`, or `ltv_unknown` when it cannot be
        predicted)."""
        if not user_id or len(user_id) > 128:
            raise InvalidInput("user_id must be 1 to 128 characters")
        approved: list[str] | None = None  # the channels a campaign may use (None: no campaign, any)
        if campaign_id is not None:  # only a live campaign reaches people, by the channels it was approved for
            found = await self._campaign_state(campaign_id) if self._campaign_state is not None else None
            if found is None:
                raise NotFound(f"no campaign {campaign_id}")
            state, channels = found
            if state != "live":
                raise Conflict(f"cannot activate for campaign {campaign_id}: it is {state} (only live campaigns "
                               "activate)", {"state": state})
            # An approval rule counted these channels (SMS may need two approvers): no other may be used.
            approved = [c for c in channels if c in ACTIVATION_CHANNELS]
            if channel is not None and channel not in approved:
                raise Conflict(f"cannot activate for campaign {campaign_id} by {channel}: it was approved for "
                               f"{', '.join(approved) or 'no activation channel'}", {"field": "channel",
                                                                                      "channels": approved})
            if not approved:
                raise Conflict(f"cannot activate for campaign {campaign_id}: it was approved for no activation "
                               "channel (edit its channels and have it approved)", {"field": "channel",
                                                                                   "channels": approved})
            campaign = campaign_id
        activation_id = f"act_{ids.token_hex(10)}"
        member = await self._members(user_id)
        day = self._today()
        result: dict = {"activation_id": activation_id, "channel": None, "status": "unreachable",
                        "provider_message_id": None}
        picks: list[tuple[str, str, str | None]] | None = None  # asked for once, before the first send
        lowest, highest = ltv_band
        if lowest is not None and highest is not None and lowest > highest:
            raise InvalidInput("ltv_min must not be above ltv_max", {"field": "ltv_min"})
        banded = lowest is not None or highest is not None
        value = await self._customer_value.value(user_id) if banded and self._customer_value else None
        if banded:
            result["predicted_ltv"] = value
        if banded and value is None:
            result["status"] = "ltv_unknown"
        elif banded and value is not None and not ((lowest is None or value >= lowest) and
                                                   (highest is None or value <= highest)):
            result["status"] = "outside_ltv_band"
        elif self.capped(user_id):
            result["status"] = "capped"
        else:
            # The slot is taken before the first await, so concurrent activations cannot pass the cap together.
            counts = self._sent_today  # the day's, even if the day turns before this ends
            counts[user_id] += 1
            sent = False
            try:
                candidates = [channel] if channel else [c for c in self._channels(user_id, member, present)
                                                        if approved is None or c in approved]
                for ch in candidates:
                    if not self._reachable(ch, user_id, member, present):
                        continue
                    identifiers = [user_id, *((member.email, member.phone, member.push_token) if member else ())]
                    suppressed = await self._suppression.is_suppressed(identifiers, _SUPPRESSION_CHANNEL.get(ch, ch))
                    if suppressed is not None:
                        result.update(channel=ch, status="suppressed")
                        continue
                    if picks is None and ch in _CARRIES_RECOMMENDED:
                        picks = await self.recommended(user_id)
                    body, body_html = with_recommended(text, html, picks or []) if ch in _CARRIES_RECOMMENDED \
                        else (text, html)
                    status, provider_id = await self._send(ch, user_id, member, activation_id, subject, body,
                                                           body_html, campaign_id)
                    result.update(channel=ch, status=status, provider_message_id=provider_id)
                    if status in ("queued", "delivered", "sent"):
                        sent = True
                        await self._counts.add_one(user_id, day)
                        break
            finally:
                if not sent:  # nothing went out: give the slot back (a customer never reached holds no entry)
                    counts[user_id] -= 1
                    if counts[user_id] <= 0:
                        del counts[user_id]
        carried = result["status"] in ("queued", "delivered") and result["channel"] in _CARRIES_RECOMMENDED
        recommended = [item_id for item_id, _, _ in picks or ()] if carried else []
        self._log_event("Activation", {**result, "user_id": user_id, "campaign": campaign,
                                       **({"recommended": recommended} if recommended else {})})
        return result


def with_recommended(text: str, html: str | None, picks: list[tuple[str, str, str | None]]
                     ) -> tuple[str, str | None]:
    """The message's text and HTML (when it has one) with the recommended items appended."""
    if not picks:
        return text, html
    lines = [f"- {label}: {link}" if link else f"- {label}" for _, label, link in picks]
    text = f"{text.rstrip()}\n\nRecommended for you:\n" + "\n".join(lines) + "\n"
    if html is not None:
        entries = "".join(f'<li><a href="{html_lib.escape(link)}">{html_lib.escape(label)}</a></li>' if link
                          else f"<li>{html_lib.escape(label)}</li>" for _, label, link in picks)
        html = f"{html}\n<h3>Recommended for you</h3>\n<ul>{entries}</ul>"
    return text, html
