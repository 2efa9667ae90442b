"""Email analytics: SendGrid event webhooks and our own SMTP path's records, counted per activation.

SendGrid posts arrays of events; custom args (our `activation_id`) arrive as top-level keys.
A repeat is the same `sg_event_id` for the same event (and bounce type); events without an
id are identified by their content. Hard bounces, spam reports and unsubscribes put the
address on the email suppression list; a group resubscribe lifts an unsubscribe.
With `sendgrid.verification_key` set, the ECDSA P-256 / SHA-256 signature over timestamp +
raw body (X-Twilio-Email-Event-Webhook-Signature / -Timestamp) must verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.channels.suppression import SuppressionService
from app.errors import Forbidden, InvalidInput
from state.clock import Clock
from state.outbox import EmailEvent
from state.ports import OutboxStore

KNOWN = {"processed", "dropped", "delivered", "deferred", "bounce", "open", "click", "spamreport", "unsubscribe",
         "group_unsubscribe", "group_resubscribe"}
MAX_EVENTS = 10_000


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
                 verification_key: ec.EllipticCurvePublicKey | None) -> None:
        self._store = store
        self._suppression = suppression
        self._clock = clock
        self._key = verification_key

    def verify(self, raw: bytes, signature: str | None, timestamp: str | None) -> None:
        if self._key is None:
            return
        if not signature or not timestamp:
            raise Forbidden("signed webhook expected: X-Twilio-Email-Event-Webhook-Signature and -Timestamp")
        try:
            self._key.verify(base64.b64decode(signature), timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, binascii.Error):
            raise Forbidden("webhook signature does not verify") from None

    async def ingest(self, raw: bytes) -> dict[str, int]:
        """Record a SendGrid event batch; returns counts of recorded, duplicate and ignored events."""
        try:
            events = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"malformed JSON: {exc}") from None
        if not isinstance(events, list):
            raise InvalidInput("expected a JSON array of events")
        if len(events) > MAX_EVENTS:
            raise InvalidInput(f"at most {MAX_EVENTS} events per request")
        counts = {"recorded": 0, "duplicate": 0, "ignored": 0}
        for n, event in enumerate(events):
            if not isinstance(event, dict) or not isinstance(event.get("event"), str) \
                    or not isinstance(event.get("email", ""), str):
                raise InvalidInput(f"events[{n}] must be an object with an event name")
            kind = event["event"]
            if kind not in KNOWN:
                counts["ignored"] += 1
                continue
            if await self._store.record_event(self._event(event)):
                counts["recorded"] += 1
                await self._suppress(event)
            else:
                counts["duplicate"] += 1
        return counts

    def _event(self, e: dict) -> EmailEvent:
        sg_id = e.get("sg_event_id")
        if isinstance(sg_id, str) and sg_id:
            key = f"sg:{sg_id}:{e['event']}:{e.get('type') or ''}"
        else:
            key = "sg-content:" + hashlib.sha256(json.dumps(e, sort_keys=True).encode()).hexdigest()
        at = e.get("timestamp")
        activation = e.get("activation_id")
        return EmailEvent(key, e["event"] if e.get("type") != "blocked" else "blocked",
                          float(at) if isinstance(at, (int, float)) else self._clock.now(),
                          str(e.get("sg_message_id") or "") or None,
                          activation if isinstance(activation, str) else None,
                          e.get("email") or None, {k: v for k, v in e.items() if k != "event"})

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
            current = self._suppression.list(address, "email")
            if current and current[0].reason == "unsubscribe":
                await self._suppression.remove([(address, "email")])

    async def report(self, activation_id: str | None) -> dict:
        """Counts and rates for one activation (or all mail when None)."""
        events = await self._store.events(activation_id)
        by_kind: dict[str, list[EmailEvent]] = {}
        for e in events:
            by_kind.setdefault(e.kind, []).append(e)

        def count(*kinds: str) -> int:
            return sum(len(by_kind.get(k, ())) for k in kinds)

        def unique(kind: str) -> int:
            return len({(e.message_id, e.email) for e in by_kind.get(kind, ())})
        sent = count("sent", "processed")
        bounces = count("bounce")
        delivered = count("delivered") + count("sent")  # our own relay's 250 counts as delivered
        base = delivered or sent
        return {"activation_id": activation_id, "sent": sent, "delivered": delivered, "opens": count("open"),
                "unique_opens": unique("open"), "clicks": count("click"), "unique_clicks": unique("click"),
                "bounces": bounces, "blocked": count("blocked"), "dropped": count("dropped"),
                "deferred": count("deferred"), "spam_reports": count("spamreport"),
                "unsubscribes": count("unsubscribe", "group_unsubscribe"),
                "open_rate": round(unique("open") / base, 4) if base else 0.0,
                "click_rate": round(unique("click") / base, 4) if base else 0.0,
                "bounce_rate": round(bounces / sent, 4) if sent else 0.0}
