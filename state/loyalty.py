"""The loyalty ledger: append-only entries from which every balance is derived, plus members and promotions."""

from __future__ import annotations

from typing import Awaitable, Literal

import msgspec

from state.db import Database, Statement

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


class SqliteLoyaltyStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.next_id = 1

    async def entries(self) -> list[LedgerEntry]:
        """The whole ledger in order, for the replay at start."""
        rows = await self._db.fetchall("SELECT body FROM loyalty_ledger ORDER BY id")
        entries = [_entry_json.decode(r[0]) for r in rows]
        self.next_id = entries[-1].id + 1 if entries else 1
        return entries

    async def members(self) -> list[Member]:
        return [_member_json.decode(r[0]) for r in await self._db.fetchall("SELECT body FROM loyalty_members")]

    async def promotions(self) -> list[Promotion]:
        return [_promotion_json.decode(r[0]) for r in await self._db.fetchall("SELECT body FROM loyalty_promotions")]

    def new_id(self) -> int:
        entry_id, self.next_id = self.next_id, self.next_id + 1
        return entry_id

    @staticmethod
    def append(entry: LedgerEntry) -> Statement:
        return ("INSERT INTO loyalty_ledger(id, user_id, kind, transaction_id, body) VALUES (?,?,?,?,?)",
                (entry.id, entry.user_id, entry.kind, entry.transaction_id, _encode(entry).decode()))

    @staticmethod
    def put_member(member: Member) -> Statement:
        return ("INSERT INTO loyalty_members(user_id, body) VALUES (?,?) "
                "ON CONFLICT(user_id) DO UPDATE SET body=excluded.body", (member.user_id, _encode(member).decode()))

    @staticmethod
    def put_promotion(promotion: Promotion) -> Statement:
        return ("INSERT INTO loyalty_promotions(id, body) VALUES (?,?) ON CONFLICT(id) DO UPDATE SET body=excluded.body",
                (promotion.id, _encode(promotion).decode()))

    def write(self, statements: list[Statement]) -> Awaitable[list[int]]:
        return self._db.submit(statements)
