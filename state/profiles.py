"""Customer profiles for bidding: the L2 tier in SQLite (the L1 tier lives in app/bidding)."""

from __future__ import annotations

import logging

import msgspec


class Profile(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    user_id: str
    interests: list[float] = []     # up to 64 weights 0..1
    segments: list[int] = []        # segment indexes 0..63
    loyalty: list[float] = []       # the 8-number loyalty vector
    last_seen: float | None = None  # epoch seconds
    updated_at: float = 0.0


log = logging.getLogger("contrail.profiles")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Profile).decode
