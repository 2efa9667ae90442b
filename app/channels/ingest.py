"""Omnichannel ingest: what customers do in the app, on the web, at the counter and at the gate.

Each event goes to the event log; updates the profile bidding reads (recency, and interest
in the event's category, written behind in batches); earns stars when it is a purchase, a
loyalty swipe or a check-in (durably, before the answer); and may trigger an activation:
cart abandon → retargeting, purchase → post-purchase upsell, store visit / loyalty swipe /
check-in → in-store offer, product view / wishlist add → only while the session has been
active within the last 30 minutes. An event's time is its `at` (epoch seconds), so history can be
replayed: one further in the future than `ingest.max_future_skew_s` refuses the request (422), and
one older than the session window fires no activation and earns no stars. Accepted events go to
the other domains on the bus (`CustomerEventsIngested`: recommendations learn from them).
"""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
import numpy as np

from app.channels.events import CustomerEvent, CustomerEventsIngested
from app.errors import InvalidInput, RuleViolation
from app.jsondepth import check_depth, refuse_left_open
from app.runtime.clock import Clock
from app.runtime.lru import LRU
from state.profiles import Profile
from state.reco import ITEM_ID_PATTERN

log = logging.getLogger("contrail.channels")

SOURCES = ("mobile_app", "pos", "kiosk", "web", "call_center", "partner_api", "iot")
TYPES = ("page_view", "product_view", "click", "wishlist_add", "cart_add", "cart_abandon", "purchase", "dismiss",
         "store_visit", "loyalty_swipe", "check_in", "app_open", "search")
TRIGGERS = {"cart_abandon": "retargeting", "purchase": "post_purchase_upsell", "store_visit": "in_store_offer",
            "loyalty_swipe": "in_store_offer", "check_in": "in_store_offer", "product_view": "browse_follow_up",
            "wishlist_add": "browse_follow_up"}
SESSION_WINDOW_S = 30 * 60
MAX_BATCH = 5_000


class ChannelEvent(msgspec.Struct, forbid_unknown_fields=True):
    source: str
    type: str
    user_id: str | None = None
    device_id: str | None = None
    session_id: str | None = None
    at: Annotated[float, msgspec.Meta(ge=0)] | None = None  # epoch seconds (one far ahead is a future_event)
    amount_cents: int | None = None
    transaction_id: str | None = None
    category: str | None = None
    product_id: str | None = None
    attributes: dict[str, Any] = {}


# A well-formed batch decodes straight into events; one that is not is decoded loosely and
# checked event by event, so that each bad event gets its own error and the rest are kept.
_typed = msgspec.json.Decoder(list[ChannelEvent] | ChannelEvent)
_loose = msgspec.json.Decoder()
_ITEM_ID = re.compile(ITEM_ID_PATTERN)
_FIELDS = ("user_id", "device_id", "session_id", "transaction_id", "category", "product_id")


def interest_index(category: str) -> int:
    """A category's slot among the 64 interest features (stable across restarts)."""
    return zlib.crc32(category.strip().lower().encode()) % 64


class WebActivity:
    """When each customer was last on the website (since this process started; the most recent 200,000):
    ingest records it, activation asks it before choosing the web channel."""

    def __init__(self, clock: Clock, capacity: int = 200_000) -> None:
        self._clock = clock
        self.last_seen: LRU[str, float] = LRU(capacity, "web_activity")

    def saw(self, user_id: str, at: float) -> None:
        """A web event of the customer's at `at`: the latest one counts (a replayed older event moves nothing back)."""
        last = self.last_seen.peek(user_id)
        self.last_seen.put(user_id, at if last is None else max(last, at))

    def seen(self, user_id: str, within_s: float = 30 * 86_400) -> bool:
        """Whether the customer has been on the website within `within_s`."""
        at = self.last_seen.peek(user_id)
        return at is not None and self._clock.now() - at <= within_s


class IngestService:
    def __init__(self, config, loyalty, profiles, activation, web: WebActivity, clock: Clock, log_events,
                 publish: Callable[[CustomerEventsIngested], Awaitable[None]]) -> None:
        self._config = config
        self._publish = publish
        self._loyalty = loyalty
        self._profiles = profiles
        self._activation = activation
        self._clock = clock
        self._log_events = log_events
        self.sessions: LRU[str, float] = LRU(100_000, "ingest_sessions")  # session -> last activity
        self._dirty: dict[str, tuple[float, dict[int, float]]] = {}  # user -> (last seen, interest increments)
        self._flushing: dict[str, tuple[float, dict[int, float]]] = {}  # what a write behind under way holds
        self._triggers: set[asyncio.Task] = set()
        self._web = web

    @property
    def profiles_pending(self) -> int:
        """Customers whose profile updates wait for the next write behind (`ingest.profile_flush_interval_s`)."""
        return len(self._dirty)

    def _check(self, e: ChannelEvent) -> str | None:
        if e.source not in SOURCES:
            return f"source must be one of {', '.join(SOURCES)}"
        if e.source not in self._config.enabled_sources:
            return f"source {e.source} is disabled"
        if e.type not in TYPES:
            return f"type must be one of {', '.join(TYPES)}"
        if not (e.user_id or e.device_id):
            return "user_id or device_id is required"
        for name in _FIELDS:
            value = getattr(e, name)
            if value is not None and not 1 <= len(value) <= 128:
                return f"{name} must be 1 to 128 characters"
        if e.product_id is not None and not _ITEM_ID.match(e.product_id):
            return "product_id must have no spaces, slashes or control characters (it names a recommendable item)"
        if e.type in ("purchase", "loyalty_swipe"):
            if e.amount_cents is None or not 0 <= e.amount_cents <= 10**10:
                return f"{e.type} needs amount_cents (0 to 10,000,000,000)"
            if not e.transaction_id:
                return f"{e.type} needs a transaction_id"
        return None

    async def ingest(self, raw: bytes) -> dict:
        """One event (a JSON object) or a batch (a JSON array): invalid events are reported, the rest accepted."""
        check_depth(raw)
        try:
            refuse_left_open(raw)
            try:
                doc, typed = _typed.decode(raw), True
            except msgspec.ValidationError:
                # The typed pass can stop at a bad field before it reaches malformed JSON further on.
                doc, typed = _loose.decode(raw), False
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"malformed JSON: {exc}") from None
        except UnicodeDecodeError as exc:  # msgspec's error for invalid UTF-8 inside a JSON string
            # It holds only that string and counts from its start: the offset in the body is found from the body.
            what = exc.reason
            try:
                raw.decode()
            except UnicodeDecodeError as in_body:
                what = f"{in_body.reason} at byte {in_body.start}"
            raise InvalidInput(f"malformed JSON: invalid UTF-8 ({what})") from None
        except RecursionError:  # brackets opened and never closed (balanced deep ones are refused above)
            raise InvalidInput("malformed JSON: brackets left open") from None
        items = doc if isinstance(doc, list) else [doc]
        if not items or len(items) > MAX_BATCH:
            raise InvalidInput(f"send 1 to {MAX_BATCH} events")
        now = self._clock.now()
        rejected, earns, logged = [], [], []
        published: list[CustomerEvent] = []
        events: list[tuple[int, ChannelEvent]] = []
        for n, item in enumerate(items):
            if typed:
                e = item
            else:
                try:
                    e = msgspec.convert(item, ChannelEvent)
                except msgspec.ValidationError as exc:
                    rejected.append({"index": n, "error": str(exc)})
                    continue
            if e.at is not None and e.at > now + self._config.max_future_skew_s:
                # Before anything is applied: a replay from a clock that runs ahead is fixed at the source.
                ahead = f"{e.at - now:.0f} s" if e.at - now < 1e11 else "more than 3,000 years"
                raise RuleViolation(f"event {n} ({e.type}) is {ahead} in the future; at most "
                                    f"{self._config.max_future_skew_s:g} s is allowed (ingest.max_future_skew_s)",
                                    {"index": n, "type": e.type, "at": e.at, "now": now}, code="future_event")
            events.append((n, e))
        for n, e in events:
            problem = self._check(e)
            if problem is not None:
                rejected.append({"index": n, "error": problem})
                continue
            at = e.at if e.at is not None else now
            live = now - at <= SESSION_WINDOW_S  # a replayed old event fires nothing and earns nothing
            logged.append({"source": e.source, "type": e.type, "user_id": e.user_id, "device_id": e.device_id,
                           "session_id": e.session_id, "at": at, "category": e.category,
                           "product_id": e.product_id})
            if e.user_id:
                self._touch(e.user_id, at, e.category)
                if e.source == "web":
                    self._web.saw(e.user_id, at)
                published.append(CustomerEvent(e.user_id, e.type, e.product_id, e.category, at))
                if live and e.type in ("purchase", "loyalty_swipe"):
                    earns.append(self._loyalty.earn(e.user_id, e.amount_cents, e.source, e.transaction_id))
                elif live and e.type == "check_in":
                    earns.append(self._loyalty.earn(e.user_id, 0, e.source,
                                                    e.transaction_id or f"check_in:{e.user_id}:{int(at // 86_400)}",
                                                    qualifying=False, fixed_stars=self._config.check_in_stars))
            if live:
                self._trigger(e, at)
        accepted = len(logged)
        self._log_events("ChannelEvent", logged)
        results = await asyncio.gather(*earns, return_exceptions=True)
        if published:
            await self._publish(CustomerEventsIngested(tuple(published)))
        failed = [str(r) for r in results if isinstance(r, Exception)]
        return {"accepted": accepted, "rejected": rejected, "stars_earned_events": len(earns) - len(failed),
                "earn_errors": failed}

    def forget(self, user_id: str) -> None:
        """Drop a customer's profile updates not written yet (erasure), so none brings their profile back: those
        pending, and those of a write behind under way that it has not sent to the store yet."""
        self._dirty.pop(user_id, None)
        self._flushing.pop(user_id, None)

    def _touch(self, user_id: str, at: float, category: str | None) -> None:
        last, interests = self._dirty.get(user_id, (0.0, {}))
        if category:
            slot = interest_index(category)
            interests[slot] = interests.get(slot, 0.0) + 0.1
        self._dirty[user_id] = (max(last, at), interests)

    def _trigger(self, e: ChannelEvent, at: float) -> None:
        session_active = False
        if e.session_id:
            previous = self.sessions.peek(e.session_id)
            session_active = previous is not None and at - previous <= SESSION_WINDOW_S
            self.sessions.put(e.session_id, at)
        campaign = TRIGGERS.get(e.type)
        if campaign is None or not e.user_id or not self._config.triggers:
            return
        if e.type in ("product_view", "wishlist_add") and not session_active:
            return
        if len(self._triggers) >= self._config.max_pending_triggers:
            return  # activations are best effort; ingest never waits on them
        if self._activation.capped(e.user_id):
            return  # the customer has had today's messages: no task for an activation that would stop at the cap
        task = asyncio.ensure_future(self._activate(e.user_id, campaign, e.type in ("store_visit", "loyalty_swipe",
                                                                                     "check_in")))
        self._triggers.add(task)
        task.add_done_callback(self._triggers.discard)

    async def _activate(self, user_id: str, campaign: str, present: bool) -> None:
        try:
            await self._activation.activate(user_id, _SUBJECTS[campaign], _TEXTS[campaign], present=present,
                                             campaign=campaign)
        except Exception as exc:  # a trigger's failure must not reach the ingest caller
            log.warning("triggered activation failed", extra={"user_id": user_id, "error": repr(exc)[:200]})

    async def flush_profiles(self, chunk: int = 25) -> int:
        """Write the pending profile updates behind (recency and interests), a chunk per commit so that
        ingest keeps running in between."""
        dirty = self._flushing = self._dirty
        self._dirty = {}
        users = list(dirty.items())
        try:
            for start in range(0, len(users), chunk):
                # Sequential awaits: L1 hits finish without suspending, so no task per user.
                profiles = [await self._updated(u, last, inc) for u, (last, inc) in users[start:start + chunk]
                            if u in dirty]
                # Not a customer erased while this chunk was read (forget): their profile is gone for good.
                kept = [p for p in profiles if p.user_id in dirty]
                if kept:
                    await self._profiles.put(*kept)
        finally:
            self._flushing = {}
        return len(users)

    async def _updated(self, user_id: str, last_seen: float, increments: dict[int, float]) -> Profile:
        current = await self._profiles.get(user_id)
        interests = np.zeros(64)
        segments: list[int] = []
        loyalty: list[float] = []
        if current is not None:
            if current.interests is not None:
                known = current.interests[:64]
                interests[:len(known)] = known
            segments = list(current.segments)
            loyalty = current.loyalty.tolist() if current.loyalty is not None else []
            last_seen = max(last_seen, current.last_seen or 0.0)
        for slot, inc in increments.items():
            interests[slot] += inc
        np.minimum(interests, 1.0, out=interests)
        return Profile(user_id, interests.round(4).tolist(), segments, loyalty, last_seen, self._clock.now())


_SUBJECTS = {"retargeting": "Still thinking about your trip?", "post_purchase_upsell": "Make your trip even better",
             "in_store_offer": "Welcome! An offer while you are here", "browse_follow_up": "Seen something you like?"}
_TEXTS = {"retargeting": "Your seats are still there. Complete your booking before prices change.",
          "post_purchase_upsell": "Add a bag, a seat or lounge access to your booking.",
          "in_store_offer": "Show this message at the counter for today's offer.",
          "browse_follow_up": "The flights you looked at are still available."}
