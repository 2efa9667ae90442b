"""SQL storage of loyalty: the loyalty port's SQL (SQLite, and PostgreSQL through the shared dialect)."""

from __future__ import annotations

from adapters.pii import PiiCipher
from adapters.sqlite.statements import SqlDatabase, Statement, code_points
from state.loyalty import (
    LedgerEntry,
    LoyaltyAccount,
    Member,
    Promotion,
    _account_json,
    _encode,
    _entry_json,
    _member_json,
    _promotion_json,
)

ID_BLOCK = 64  # PostgreSQL: ids a node takes from the shared sequence at a time (its INCREMENT BY)
MEMBER = "loyalty_members.body"  # sealed: a member's email, phone, push token and birthday


class SqliteLoyaltyStore:
    def __init__(self, db: SqlDatabase, pii: PiiCipher) -> None:
        self._db = db
        self._pii = pii
        self.next_id = 1
        self._block_end = 0  # PostgreSQL: the end of the block of ids this node is handing out

    async def prepare(self) -> None:
        """Count entry ids on from the highest stored (one node; nodes sharing PostgreSQL take blocks)."""
        top = await self._db.fetchone("SELECT max(id) FROM loyalty_ledger")
        self.next_id = (top[0] if top and top[0] is not None else 0) + 1

    async def accounts(self, after: str | None, limit: int) -> list[LoyaltyAccount]:
        """Members' stored states in user id order, after the member `after`."""
        rows = await self._db.fetchall(
            "SELECT body FROM loyalty_accounts WHERE user_id > ? ORDER BY user_id LIMIT ?", (after or "", limit))
        return [_account_json.decode(r[0]) for r in rows]

    async def account_ids(self, after: str | None, limit: int) -> list[str]:
        """Members with a stored state, in user id order after the member `after` (their ids only)."""
        rows = await self._db.fetchall(
            "SELECT user_id FROM loyalty_accounts WHERE user_id > ? ORDER BY user_id LIMIT ?", (after or "", limit))
        return [r[0] for r in rows]

    async def account(self, user_id: str) -> LoyaltyAccount | None:
        """A member's stored state."""
        row = await self._db.fetchone("SELECT body FROM loyalty_accounts WHERE user_id = ?", (user_id,))
        return _account_json.decode(row[0]) if row else None

    async def member_ids(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` members (with a stored state) whose user id starts with `prefix`, in any case (ASCII), in
        user id order: a scan of the states' keys."""
        pattern = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        order = code_points(self._db.dialect, "user_id")
        rows = await self._db.fetchall(
            f"SELECT user_id FROM loyalty_accounts WHERE lower(user_id) LIKE ? ESCAPE '\\' ORDER BY {order} LIMIT ?",
            (pattern, limit))
        return [r[0] for r in rows]

    async def unapplied(self, first: str, last: str) -> list[tuple[int, LedgerEntry]]:
        """The entries of the members from `first` to `last` that come after their stored state (appended by a
        version that stored none, or meanwhile), with their numbers, by member and in order."""
        rows = await self._db.fetchall(
            "SELECT l.seq, l.body FROM loyalty_accounts a CROSS JOIN loyalty_ledger l "
            "WHERE a.user_id >= ? AND a.user_id <= ? AND l.user_id = a.user_id AND l.seq > a.seq "
            "ORDER BY l.user_id, l.seq", (first, last))
        return [(int(n), _entry_json.decode(body)) for n, body in rows]

    async def stateless_members(self, after: str | None, limit: int) -> list[str]:
        """Members with ledger entries and no stored state (a database from before states were stored), in user
        id order after `after`: one index entry per member (their first entry's), not their history."""
        rows = await self._db.fetchall(
            "SELECT f.user_id FROM loyalty_ledger f WHERE f.seq = 1 AND f.user_id > ? AND NOT EXISTS "
            "(SELECT 1 FROM loyalty_accounts a WHERE a.user_id = f.user_id) ORDER BY f.user_id LIMIT ?",
            (after or "", limit))
        return [r[0] for r in rows]

    async def entries_of(self, user_ids: list[str], after: tuple[str, int] | None,
                         limit: int) -> list[tuple[int, LedgerEntry]]:
        """These members' entries with their numbers, by member and in order, after the position `after`
        (user id, number)."""
        marks = ",".join("?" * len(user_ids))
        user, seq = after or ("", 0)
        rows = await self._db.fetchall(
            f"SELECT seq, body FROM loyalty_ledger WHERE user_id IN ({marks}) "
            "AND (user_id > ? OR (user_id = ? AND seq > ?)) ORDER BY user_id, seq LIMIT ?",
            (*user_ids, user, user, seq, limit))
        return [(int(n), _entry_json.decode(body)) for n, body in rows]

    async def due(self, now: float, after: str | None, limit: int) -> list[str]:
        """Members with stars past their expiry as stored, in user id order after the member `after`."""
        rows = await self._db.fetchall(
            "SELECT user_id FROM loyalty_accounts WHERE next_expiry IS NOT NULL AND next_expiry <= ? AND user_id > ? "
            "ORDER BY user_id LIMIT ?", (now, after or "", limit))
        return [r[0] for r in rows]

    async def save_accounts(self, accounts: list[LoyaltyAccount]) -> None:
        """Store members' states (rebuilt from their ledger at a start), never over a later one."""
        await self._db.write([_save(account) for account in accounts])

    async def entries_after(self, user_id: str, seq: int) -> list[tuple[int, LedgerEntry]]:
        """A member's entries after their `seq`-th, with their numbers, in order: what other writers (other nodes)
        appended since."""
        rows = await self._db.fetchall(
            "SELECT seq, body FROM loyalty_ledger WHERE user_id = ? AND seq > ? ORDER BY seq", (user_id, seq))
        return [(int(n), _entry_json.decode(body)) for n, body in rows]

    async def page(self, user_id: str, after_id: int | None, limit: int) -> list[LedgerEntry] | None:
        """Up to `limit` of a member's entries in their order, after the entry `after_id` (from the first without
        one); None when that entry is not one of the member's."""
        seq = 0
        if after_id is not None:
            row = await self._db.fetchone("SELECT seq FROM loyalty_ledger WHERE id = ? AND user_id = ?",
                                          (after_id, user_id))
            if row is None:
                return None
            seq = int(row[0])
        rows = await self._db.fetchall(
            "SELECT body FROM loyalty_ledger WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?", (user_id, seq, limit))
        return [_entry_json.decode(r[0]) for r in rows]

    async def transaction(self, kind: str, transaction_id: str) -> LedgerEntry | None:
        """The entry of kind `kind` ("earn" or "reverse") of a transaction, if there is one."""
        row = await self._db.fetchone(
            "SELECT body FROM loyalty_ledger WHERE kind = ? AND transaction_id = ?", (kind, transaction_id))
        return _entry_json.decode(row[0]) if row else None

    async def purchases(self, user_id: str, before_seq: int) -> list[LedgerEntry]:
        """A member's earns and reversals before their `before_seq`-th entry, in order (a refund recounts the tiers
        the purchases still standing reached)."""
        rows = await self._db.fetchall(
            "SELECT body FROM loyalty_ledger WHERE user_id = ? AND seq < ? AND kind IN ('earn', 'reverse') "
            "ORDER BY seq", (user_id, before_seq))
        return [_entry_json.decode(r[0]) for r in rows]

    async def members(self, after: str | None, limit: int) -> list[Member]:
        """Members' details in user id order, after the member `after`."""
        rows = await self._db.fetchall(
            "SELECT body FROM loyalty_members WHERE user_id > ? ORDER BY user_id LIMIT ?", (after or "", limit))
        return [_member_json.decode(self._pii.open(r[0], MEMBER)) for r in rows]

    async def member(self, user_id: str) -> Member | None:
        row = await self._db.fetchone("SELECT body FROM loyalty_members WHERE user_id = ?", (user_id,))
        return _member_json.decode(self._pii.open(row[0], MEMBER)) if row else None

    async def forget_member(self, user_id: str) -> bool:
        """Delete a member's contact details (erasure); their ledger stays. Whether there were any."""
        deleted, = await self._db.write([("DELETE FROM loyalty_members WHERE user_id = ?", (user_id,))])
        return deleted > 0

    async def promotions(self, after: str | None, limit: int) -> list[Promotion]:
        """Promotions in id order, after the promotion `after`."""
        rows = await self._db.fetchall(
            "SELECT body FROM loyalty_promotions WHERE id > ? ORDER BY id LIMIT ?", (after or "", limit))
        return [_promotion_json.decode(r[0]) for r in rows]

    async def new_id(self) -> int:
        """A ledger entry id no other writer gets: one node counts on from the highest stored; nodes sharing
        PostgreSQL take blocks from its sequence."""
        if self._db.dialect == "postgres" and self.next_id >= self._block_end:
            row = await self._db.fetchone("SELECT nextval('loyalty_entry_ids')")
            assert row is not None
            self.next_id, self._block_end = int(row[0]), int(row[0]) + ID_BLOCK
        entry_id, self.next_id = self.next_id, self.next_id + 1
        return entry_id


def _save(account: LoyaltyAccount) -> Statement:
    """A member's state as of their `seq`-th entry, unless a later one is stored already."""
    next_expiry = min((lot.expires_at for lot in account.lots if lot.expires_at is not None), default=None)
    return ("INSERT INTO loyalty_accounts(user_id, seq, next_expiry, body) VALUES (?,?,?,?) ON CONFLICT(user_id) "
            "DO UPDATE SET seq = excluded.seq, next_expiry = excluded.next_expiry, body = excluded.body "
            "WHERE loyalty_accounts.seq < excluded.seq",
            (account.user_id, account.seq, next_expiry, _encode(account).decode()))


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

    def save_account(self, account: LoyaltyAccount) -> None:
        """The member's state after their latest entry (appended in the same transaction): what a start reads."""
        self._statements.append(_save(account))

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
