"""SQL storage of loyalty: the loyalty port's SQL (SQLite, and PostgreSQL through the shared dialect)."""

from __future__ import annotations

from adapters.pii import PiiCipher
from adapters.sqlite.statements import SqlDatabase, Statement
from state.loyalty import LedgerEntry, Member, Promotion, _encode, _entry_json, _member_json, _promotion_json

ID_BLOCK = 64  # PostgreSQL: ids a node takes from the shared sequence at a time (its INCREMENT BY)
MEMBER = "loyalty_members.body"  # sealed: a member's email, phone, push token and birthday


class SqliteLoyaltyStore:
    def __init__(self, db: SqlDatabase, pii: PiiCipher) -> None:
        self._db = db
        self._pii = pii
        self.next_id = 1
        self._block_end = 0  # PostgreSQL: the end of the block of ids this node is handing out

    async def entries(self) -> list[LedgerEntry]:
        """The whole ledger, each member's entries in their order, for the replay at start."""
        rows = await self._db.fetchall("SELECT body FROM loyalty_ledger ORDER BY user_id, seq")
        top = await self._db.fetchone("SELECT max(id) FROM loyalty_ledger")
        self.next_id = (top[0] if top and top[0] is not None else 0) + 1
        return [_entry_json.decode(r[0]) for r in rows]

    async def entries_after(self, user_id: str, seq: int) -> list[tuple[int, LedgerEntry]]:
        """A member's entries after their `seq`-th, with their numbers, in order: what other writers (other nodes)
        appended since."""
        rows = await self._db.fetchall(
            "SELECT seq, body FROM loyalty_ledger WHERE user_id = ? AND seq > ? ORDER BY seq", (user_id, seq))
        return [(int(n), _entry_json.decode(body)) for n, body in rows]

    async def earner(self, transaction_id: str) -> str | None:
        """The member who earned for `transaction_id`, if anyone did."""
        row = await self._db.fetchone(
            "SELECT user_id FROM loyalty_ledger WHERE kind = 'earn' AND transaction_id = ?", (transaction_id,))
        return row[0] if row else None

    async def members(self) -> list[Member]:
        return [_member_json.decode(self._pii.open(r[0], MEMBER))
                for r in await self._db.fetchall("SELECT body FROM loyalty_members")]

    async def member(self, user_id: str) -> Member | None:
        row = await self._db.fetchone("SELECT body FROM loyalty_members WHERE user_id = ?", (user_id,))
        return _member_json.decode(self._pii.open(row[0], MEMBER)) if row else None

    async def forget_member(self, user_id: str) -> bool:
        """Delete a member's contact details (erasure); their ledger stays. Whether there were any."""
        deleted, = await self._db.write([("DELETE FROM loyalty_members WHERE user_id = ?", (user_id,))])
        return deleted > 0

    async def promotions(self) -> list[Promotion]:
        return [_promotion_json.decode(r[0]) for r in await self._db.fetchall("SELECT body FROM loyalty_promotions")]

    async def new_id(self) -> int:
        """A ledger entry id no other writer gets: one node counts on from the highest stored; nodes sharing
        PostgreSQL take blocks from its sequence."""
        if self._db.dialect == "postgres" and self.next_id >= self._block_end:
            row = await self._db.fetchone("SELECT nextval('loyalty_entry_ids')")
            assert row is not None
            self.next_id, self._block_end = int(row[0]), int(row[0]) + ID_BLOCK
        entry_id, self.next_id = self.next_id, self.next_id + 1
        return entry_id


class SqliteLedgerWrites:
    """Loyalty's writes in a transaction (see uow.py)."""

    __slots__ = ("_statements", "_touched", "_pii")

    def __init__(self, statements: list[Statement], touched: list[tuple[str, str]] | None, pii: PiiCipher) -> None:
        self._statements = statements
        self._touched = touched
        self._pii = pii

    def append(self, entry: LedgerEntry, seq: int) -> None:
        """The member's `seq`-th entry: refused (WriteConflict "loyalty:<user>") if another writer appended it
        first, or if its transaction was earned (or reversed) already."""
        self._statements.append((
            "INSERT OR IGNORE INTO loyalty_ledger(id, user_id, seq, kind, transaction_id, body) VALUES (?,?,?,?,?,?)",
            (entry.id, entry.user_id, seq, entry.kind, entry.transaction_id, _encode(entry).decode()), 1,
            f"loyalty:{entry.user_id}"))
        if self._touched is not None:
            self._touched.append(("member", entry.user_id))

    def put_member(self, member: Member) -> None:
        self._statements.append(("INSERT INTO loyalty_members(user_id, body) VALUES (?,?) "
                                 "ON CONFLICT(user_id) DO UPDATE SET body=excluded.body",
                                 (member.user_id, self._pii.seal(_encode(member).decode(), MEMBER))))
        if self._touched is not None:
            self._touched.append(("member", member.user_id))

    def put_promotion(self, promotion: Promotion) -> None:
        self._statements.append(("INSERT INTO loyalty_promotions(id, body) VALUES (?,?)"
                                 " ON CONFLICT(id) DO UPDATE SET body=excluded.body",
                                 (promotion.id, _encode(promotion).decode())))
        if self._touched is not None:
            self._touched.append(("promotion", promotion.id))
