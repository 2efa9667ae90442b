"""SQLite storage of accounts: the accounts port's SQL."""

from __future__ import annotations

from adapters.sqlite.statements import Insert, SqlDatabase
from state.accounts import Account, EmailTaken


class SqliteAccountStore:
    """Hot index of accounts, written through to SQLite."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self._by_id: dict[str, Account] = {}
        self._by_email: dict[str, Account] = {}

    async def load(self) -> None:
        rows = await self._db.fetchall(
            "SELECT id, email, password_hash, role, created_at FROM accounts ORDER BY created_at")
        for row in rows:
            account = Account(*row)
            self._by_id[account.id] = account
            self._by_email[account.email] = account

    def get(self, account_id: str) -> Account | None:
        return self._by_id.get(account_id)

    def by_email(self, email: str) -> Account | None:
        return self._by_email.get(email.lower())

    async def fetch_by_email(self, email: str) -> Account | None:
        """Read an account another process (the CLI) may have added since start, and index it."""
        return await self._fetch("email", email.lower())

    async def fetch(self, account_id: str) -> Account | None:
        """Read an account another node (or the CLI) may have opened since start, and index it."""
        return await self._fetch("id", account_id)

    async def _fetch(self, column: str, value: str) -> Account | None:
        row = await self._db.fetchone(
            f"SELECT id, email, password_hash, role, created_at FROM accounts WHERE {column}=?", (value,))
        if row is None:
            return None
        account = Account(*row)
        self._by_id[account.id] = account
        self._by_email[account.email] = account
        return account

    async def add(self, account: Account) -> None:
        """Reserve the email in memory (no await in between), persist, undo on failure."""
        email = account.email.lower()
        if email in self._by_email:
            raise EmailTaken(email)
        self._by_email[email] = account
        self._by_id[account.id] = account
        try:
            await self._db.write([Insert("accounts", ("id", "email", "password_hash", "role", "created_at"),
                                         [(account.id, email, account.password_hash, account.role,
                                           account.created_at)])])
        except BaseException:
            self._by_email.pop(email, None)
            self._by_id.pop(account.id, None)
            raise
