"""SQLite storage of loyalty: the loyalty port's SQL."""

from __future__ import annotations

from adapters.sqlite.statements import Insert, SqlDatabase, Statement
from state.loyalty import LedgerEntry, Member, Promotion, _encode, _entry_json, _member_json, _promotion_json


class SqliteLoyaltyStore:
    def __init__(self, db: SqlDatabase) -> None:
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


class SqliteLedgerWrites:
    """Loyalty's writes in a transaction (see uow.py)."""

    __slots__ = ("_statements",)

    def __init__(self, statements: list[Statement]) -> None:
        self._statements = statements

    def append(self, entry: LedgerEntry) -> None:
        self._statements.append(Insert("loyalty_ledger", ("id", "user_id", "kind", "transaction_id", "body"),
                                       [(entry.id, entry.user_id, entry.kind, entry.transaction_id,
                                         _encode(entry).decode())]))

    def put_member(self, member: Member) -> None:
        self._statements.append(("INSERT INTO loyalty_members(user_id, body) VALUES (?,?) "
                                 "ON CONFLICT(user_id) DO UPDATE SET body=excluded.body",
                                 (member.user_id, _encode(member).decode())))

    def put_promotion(self, promotion: Promotion) -> None:
        self._statements.append(("INSERT INTO loyalty_promotions(id, body) VALUES (?,?)"
                                 " ON CONFLICT(id) DO UPDATE SET body=excluded.body",
                                 (promotion.id, _encode(promotion).decode())))
