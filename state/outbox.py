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
    campaign_id: str | None = None   # the live campaign whose activation sent it (its clicks count in its report)


class EmailEvent(msgspec.Struct, frozen=True, gc=False):
    id: str                      # our own id, or SendGrid's sg_event_id
    kind: str                    # processed, delivered, open, click, bounce, dropped, spamreport, unsubscribe, ...
    at: float
    message_id: str | None = None
    activation_id: str | None = None
    email: str | None = None
    details: dict = {}


def email_click(message: OutboxMessage) -> dict | None:
    """The event-log payload of a click on a campaign's message (`EmailClick`): the campaign reports count it once
    per message (its `signal_id`), whichever path told us of it."""
    if message.campaign_id is None:
        return None
    return {"campaign_id": message.campaign_id, "signal_id": f"email-click:{message.id}", "message_id": message.id,
            "activation_id": message.activation_id}


_message = msgspec.json.Decoder(OutboxMessage)
_encode = msgspec.json.Encoder().encode
