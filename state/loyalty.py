"""The loyalty ledger: append-only entries from which every balance is derived, plus members and promotions."""

from __future__ import annotations

from typing import Literal

import msgspec

EntryKind = Literal["earn", "redeem", "expire", "reverse"]


class LedgerEntry(msgspec.Struct, frozen=True, gc=False):
    id: int
    user_id: str
    kind: EntryKind
    stars: int                   # signed: earn > 0; redeem, expire and reverse < 0
    at: float
    transaction_id: str | None = None
    qualifying: bool = False     # counts toward tiers (purchases do; birthday gifts do not)
    expires_at: float | None = None  # an earn lot's expiry (stars earned as Green)
    details: dict[str, str | int | float | bool] = {}


class Member(msgspec.Struct, frozen=True, gc=False):
    user_id: str
    birthday: str | None = None  # MM-DD
    preferred_channel: str | None = None
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None


class Promotion(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    id: str
    name: str
    bonus_rate: float            # added to the earn rate while active
    starts_at: float
    ends_at: float
    channels: list[str] = []     # empty = every channel


_entry_json = msgspec.json.Decoder(LedgerEntry)
_member_json = msgspec.json.Decoder(Member)
_promotion_json = msgspec.json.Decoder(Promotion)
_encode = msgspec.json.Encoder().encode
