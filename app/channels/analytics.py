"""Email analytics: SendGrid event webhooks and our own SMTP path's records, counted per activation.

SendGrid posts arrays of events; custom args arrive as top-level keys. An event is tied to
the outbox message we sent by the `contrail_message_id` unique arg our SMTP path sets (see
email.py), else by its `smtp-id` when that is our Message-ID (`<id@contrail>`); in a report,
an event not tied so is joined to our message through another event with its
`sg_message_id`, or through its `activation_id` and address. A message is counted once
whichever path reported it. A repeat is the same `sg_event_id` for the same event (and
bounce type); events without an id are identified by their content. Hard bounces, spam
reports and unsubscribes put the address on the email suppression list; a group
resubscribe lifts an unsubscribe.
With `sendgrid.verification_key` set, the ECDSA P-256 / SHA-256 signature over timestamp +
raw body (X-Twilio-Email-Event-Webhook-Signature / -Timestamp) must verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.channels.suppression import SuppressionService
from app.errors import Forbidden, InvalidInput
from app.jsondepth import refuse_left_open
from app.runtime.clock import Clock
from state.outbox import EmailEvent, OutboxMessage, email_click
from state.ports import OutboxStore

KNOWN = {"processed", "dropped", "delivered", "deferred", "bounce", "open", "click", "spamreport", "unsubscribe",
         "group_unsubscribe", "group_resubscribe"}
MAX_EVENTS = 10_000
# What a provider's event about an erased message keeps: its kind, time and ids, nothing of the person (the address,
# the IP and user agent of an open or click, the link, a bounce's reply).
IMPERSONAL = frozenset({"timestamp", "type", "sg_event_id", "sg_message_id", "smtp-id", "contrail_message_id",
                        "activation_id", "category"})
OUR_MESSAGE_ID = "@contrail>"  # the Message-ID our SMTP path sets: <outbox id@contrail>


def load_verification_key(b64_der: str) -> ec.EllipticCurvePublicKey | None:
    """The webhook verification key from its base64 DER form; None when empty; ValueError when not a P-256 key."""
    if not b64_der:
        return None
    try:
        key = serialization.load_der_public_key(base64.b64decode(b64_der, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"not a base64 DER public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an EC P-256 public key")
    return key


class EmailAnalytics:
    def __init__(self, store: OutboxStore, suppression: SuppressionService, clock: Clock,
                 verification_key: ec.EllipticCurvePublicKey | None, *, allow_unsigned: bool = False,
                 log_event: Callable[[str, dict], object] | None = None) -> None:
        """`log_event`: where a click on a campaign's message goes for the campaign's report (the event log)."""
        self._store = store
        self._suppression = suppression
        self._clock = clock
        self._log_event = log_event
        self._key = verification_key
        self._allow_unsigned = allow_unsigned

    def verify(self, raw: bytes, signature: str | None, timestamp: str | None) -> None:
        if self._key is None:
            if self._allow_unsigned:
                return
            raise Forbidden("SendGrid webhooks must be signed: set sendgrid.verification_key to the public key "
                            "from SendGrid's Signed Event Webhook settings (sendgrid.allow_unsigned is for demos)")
        if not signature or not timestamp:
            raise Forbidden("signed webhook expected: X-Twilio-Email-Event-Webhook-Signature and -Timestamp")
        try:
            # surrogateescape: the header's own bytes, as signed, whatever aiohttp could not decode of them
            self._key.verify(base64.b64decode(signature), timestamp.encode("utf-8", "surrogateescape") + raw,
                             ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, binascii.Error):
            raise Forbidden("webhook signature does not verify") from None

    async def ingest(self, raw: bytes) -> dict[str, int]:
        """Record a SendGrid event batch; returns counts of recorded, duplicate and ignored events."""
        try:
            # msgspec, not json.loads: NaN, Infinity and lone surrogates are not JSON, and would be stored.
            refuse_left_open(raw)
            events = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # the latter: invalid UTF-8 in a string
            raise InvalidInput(f"malformed JSON: {exc}") from None
        except RecursionError:  # brackets left open (balanced deep ones are refused before this)
            raise InvalidInput("malformed JSON: brackets left open") from None
        if not isinstance(events, list):
            raise InvalidInput("expected a JSON array of events")
        if len(events) > MAX_EVENTS:
            raise InvalidInput(f"at most {MAX_EVENTS} events per request")
        counts = {"recorded": 0, "duplicate": 0, "ignored": 0}
        ours: dict[str, OutboxMessage | None] = {}
        for n, event in enumerate(events):
            if not isinstance(event, dict) or not isinstance(event.get("event"), str) \
                    or not isinstance(event.get("email", ""), str):
                raise InvalidInput(f"events[{n}] must be an object with an event name")
            kind = event["event"]
            if kind not in KNOWN:
                counts["ignored"] += 1
                continue
            message = await self._message(event, ours)
            if await self._store.record_event(self._event(event, message)):
                counts["recorded"] += 1
                await self._suppress(event)
                if kind == "click" and message is not None and self._log_event is not None \
                        and (click := email_click(message)) is not None:
                    self._log_event("EmailClick", click)
            else:
                counts["duplicate"] += 1
        return counts

    async def _message(self, e: dict, cache: dict[str, OutboxMessage | None]) -> OutboxMessage | None:
        """The outbox message this event is about, if we sent it (by unique arg, else by smtp-id)."""
        candidates = [e.get("contrail_message_id")]
        smtp_id = e.get("smtp-id")
        if isinstance(smtp_id, str) and smtp_id.startswith("<") and smtp_id.endswith(OUR_MESSAGE_ID):
            candidates.append(smtp_id[1:-len(OUR_MESSAGE_ID)])
        for message_id in candidates:
            if isinstance(message_id, str) and message_id:
                if message_id not in cache:
                    cache[message_id] = await self._store.get(message_id)
                if cache[message_id] is not None:
                    return cache[message_id]
        return None

    def _event(self, e: dict, ours: OutboxMessage | None) -> EmailEvent:
        sg_id = e.get("sg_event_id")
        if isinstance(sg_id, str) and sg_id:
            key = f"sg:{sg_id}:{e['event']}:{e.get('type') or ''}"
        else:
            key = "sg-content:" + hashlib.sha256(json.dumps(e, sort_keys=True).encode()).hexdigest()
        at = _timestamp(e.get("timestamp"))
        activation = e.get("activation_id")
        message_id: str | None
        address: str | None  # ingest() let through only events whose "email" is a string or absent
        details = {k: v for k, v in e.items() if k != "event"}
        if ours is not None:  # our message id, activation and address: one message whichever path reports it
            message_id, activation, address = ours.id, ours.activation_id, ours.to or None
            if not ours.to:  # the message was erased: a late report about it keeps nothing that names the person
                details = {k: v for k, v in details.items() if k in IMPERSONAL}
        else:
            message_id, address = str(e.get("sg_message_id") or "") or None, e.get("email") or None
        return EmailEvent(key, e["event"] if e.get("type") != "blocked" else "blocked",
                          at if at is not None else self._clock.now(),
                          message_id, activation if isinstance(activation, str) else None, address, details)

    async def _suppress(self, e: dict) -> None:
        address, kind = e.get("email"), e["event"]
        if not address:
            return
        if kind == "bounce" and e.get("type") != "blocked":
            await self._suppression.add([(address, "email", "hard_bounce", None)])
        elif kind == "spamreport":
            await self._suppression.add([(address, "email", "spam_report", None)])
        elif kind in ("unsubscribe", "group_unsubscribe"):
            await self._suppression.add([(address, "email", "unsubscribe", None)])
        elif kind == "group_resubscribe":
            current = await self._suppression.entry(address, "email")
            if current is not None and current.reason == "unsubscribe":
                await self._suppression.remove([(address, "email")])

    async def report(self, activation_id: str | None) -> dict:
        """Counts and rates for one activation (or all mail when None), each message counted once.

        Per message: sent (any event but a drop), delivered (SendGrid's `delivered`, or our relay
        accepted it and nothing bounced, was blocked or dropped), opened, clicked, bounced, ...
        Unique opens / clicks are messages opened / clicked; opens / clicks are, per message, the
        larger of what our pixel / redirects and what SendGrid saw (both see the same opens).
        Rates are over messages sent.
        """
        events = await self._store.events(activation_id)
        messages: dict[object, dict[str, list[int]]] = {}  # message -> kind -> [ours, SendGrid's]
        for key, e in zip(_message_keys(events), events, strict=True):
            seen = messages.setdefault(key, {}).setdefault(e.kind, [0, 0])
            seen[_from_sendgrid(e)] += 1

        def having(*kinds: str) -> int:
            return sum(1 for m in messages.values() if any(k in m for k in kinds))

        def most(kind: str) -> int:
            return sum(max(m[kind]) for m in messages.values() if kind in m)
        sent = sum(1 for m in messages.values() if m.keys() - {"dropped"})
        delivered = sum(1 for m in messages.values()
                        if "delivered" in m or ("sent" in m and not m.keys() & {"bounce", "blocked", "dropped"}))
        opened, clicked, bounces = having("open"), having("click"), having("bounce")
        return {"activation_id": activation_id, "sent": sent, "delivered": delivered, "opens": most("open"),
                "unique_opens": opened, "clicks": most("click"), "unique_clicks": clicked,
                "bounces": bounces, "blocked": having("blocked"), "dropped": having("dropped"),
                "deferred": having("deferred"), "spam_reports": having("spamreport"),
                "unsubscribes": having("unsubscribe", "group_unsubscribe"),
                "open_rate": round(opened / sent, 4) if sent else 0.0,
                "click_rate": round(clicked / sent, 4) if sent else 0.0,
                "bounce_rate": round(bounces / sent, 4) if sent else 0.0}


def _timestamp(value: object) -> float | None:
    """An event's time, when it is a finite number of seconds (an infinite one is stored as null, and no
    report could read the event back)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        at = float(value)
    except OverflowError:
        return None
    return at if math.isfinite(at) else None


def _from_sendgrid(e: EmailEvent) -> bool:
    return e.id.startswith("sg")  # ours: sent:, open:, click:, bounce:, unsubscribe:


def _ours(e: EmailEvent) -> str | None:
    """Our outbox id for the event, when it has one: a SendGrid event not tied to our message at
    ingest keeps SendGrid's message id (or none)."""
    if _from_sendgrid(e) and e.message_id == str(e.details.get("sg_message_id") or ""):
        return None
    return e.message_id


def _message_keys(events: list[EmailEvent]) -> list[object]:
    """Which message each event is about: our outbox id when the event is tied to one, or another
    event with its sg_message_id is, or we sent one message to its address in its activation;
    else SendGrid's message id; else its activation and address."""
    by_sg: dict[str, str] = {}
    by_address: dict[tuple[str, str], set[str]] = {}
    for e in events:
        if (ours := _ours(e)) is None:
            continue
        if sg := e.details.get("sg_message_id"):
            by_sg[str(sg)] = ours
        if e.activation_id and e.email:
            by_address.setdefault((e.activation_id, e.email.lower()), set()).add(ours)
    keys: list[object] = []
    for e in events:
        sg, address = str(e.details.get("sg_message_id") or ""), (e.email or "").lower()
        mine = by_address.get((e.activation_id or "", address), ())
        if (ours := _ours(e)) is not None:
            keys.append(ours)
        elif sg in by_sg:
            keys.append(by_sg[sg])
        elif len(mine) == 1:
            keys.append(next(iter(mine)))
        else:
            keys.append(f"sg:{sg}" if sg else ("address", e.activation_id, address))
    return keys
