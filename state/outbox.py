"""The durable email outbox and the email events (opens, clicks, bounces, ...) recorded per message."""

from __future__ import annotations

from typing import Literal

import msgspec

OutboxState = Literal["pending", "sent", "failed", "suppressed"]


class OutboxMessage(msgspec.Struct, frozen=True, gc=False):
    id: str                      # also the Message-ID (<id@contrail>)
    to: str
    subject: str
    html: str
    text: str
    created_at: float
    activation_id: str | None = None
    user_id: str | None = None
    state: OutboxState = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    sent_at: float | None = None


class EmailEvent(msgspec.Struct, frozen=True, gc=False):
    id: str                      # our own id, or SendGrid's sg_event_id
    kind: str                    # processed, delivered, open, click, bounce, dropped, spamreport, unsubscribe, ...
    at: float
    message_id: str | None = None
    activation_id: str | None = None
    email: str | None = None
    details: dict = {}


_message = msgspec.json.Decoder(OutboxMessage)
_encode = msgspec.json.Encoder().encode
