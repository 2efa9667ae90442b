"""The global suppression list: identifiers (email, phone, user id) nobody may contact on a channel."""

from __future__ import annotations

from typing import Literal

import msgspec

SuppressedChannel = Literal["email", "sms", "push", "all"]


class Suppression(msgspec.Struct, frozen=True, gc=False):
    identifier: str              # lower-cased email, E.164 phone, or user id
    channel: SuppressedChannel
    reason: str                  # manual, hard_bounce, spam_report, unsubscribe, ...
    created_at: float
    expires_at: float | None = None  # None = permanent


_decode = msgspec.json.Decoder(Suppression).decode
_encode = msgspec.json.Encoder().encode
