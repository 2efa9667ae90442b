"""The durable in-app inbox."""

from __future__ import annotations

import msgspec


class InAppMessage(msgspec.Struct, frozen=True, gc=False):
    id: str
    user_id: str
    subject: str
    text: str
    at: float
    activation_id: str | None = None


_decode = msgspec.json.Decoder(InAppMessage).decode
_encode = msgspec.json.Encoder().encode
