"""The loyalty ledger: append-only entries from which every balance is derived, plus members and promotions."""

from __future__ import annotations

from typing import Literal

import msgspec

EntryKind = Literal["earn", "redeem", "expire", "reverse"]


# The channels stars are earned through (POST /v1/loyalty/earn's `channel`), which loyalty.channel_bonus may name.
EarnChannel = Literal["mobile_app", "pos", "kiosk", "web", "call_center", "partner_api", "iot"]

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


class Lot(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Stars an earn left unspent (JSON: [entry_id, left, expires_at])."""
    entry_id: int                # the earn entry
    left: int
    expires_at: float | None     # stars earned as Green expire


class Purchase(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A qualifying earn, counted toward tiers (JSON: [at, stars, transaction_id])."""
    at: float
    stars: int
    transaction_id: str | None


class LoyaltyAccount(msgspec.Struct, gc=False):
    """A member's state, derived from their ledger up to their `seq`-th entry, and stored with each entry appended
    (a start reads it instead of the history). Every field holds immutable values (tuples of tuples) and is
    replaced, never changed in place: a shallow copy is a snapshot, and the garbage collector never has to walk
    the accounts (one per member), nor their lots and purchases (structs without GC tracking, in tuples)."""

    user_id: str
    seq: int = 0                # the member's entries applied (the ledger numbers each member's entries 1, 2, ...)
    balance: int = 0            # never below 0
    debt: int = 0               # stars taken back that the balance could not cover; earns pay it first
    lifetime: int = 0
    lots: tuple[Lot, ...] = ()  # oldest first
    qualifying: tuple[Purchase, ...] = ()  # the purchases that can still count toward a tier: the last year's
    held_tier: str = "Green"
    held_until: float = 0.0
    last_redeem_at: float | None = None
    last_at: float | None = None  # the time of the member's latest entry


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
_account_json = msgspec.json.Decoder(LoyaltyAccount)
_member_json = msgspec.json.Decoder(Member)
_promotion_json = msgspec.json.Decoder(Promotion)
_encode = msgspec.json.Encoder().encode
