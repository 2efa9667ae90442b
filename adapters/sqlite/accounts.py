"""SQL storage of accounts: the accounts port's SQL. Emails are sealed (adapters/pii.py) and found by keyed hash."""

from __future__ import annotations

from adapters.pii import PiiCipher
from adapters.sqlite.statements import Insert, SqlDatabase
from state.accounts import Account, EmailTaken

_COLUMNS = "id, email, password_hash, role, created_at"
EMAIL = "accounts.email"  # the sealed column (and the associated data its values are sealed with)


class SqliteAccountStore:
    """Hot index of accounts, written through to SQLite."""

    def __init__(self, db: SqlDatabase, pii: PiiCipher) -> None:
        self._db = db
        self._pii = pii
        self._by_id: dict[str, Account] = {}
        self._by_email: dict[str, Account] = {}

    def _account(self, row: tuple) -> Account:
        account_id, email, password_hash, role, created_at = row
        return Account(account_id, self._pii.open(email, EMAIL), password_hash, role, created_at)

    def _index(self, account: Account) -> None:
        self._by_id[account.id] = account
        if account.email:  # an erased account has none: nobody signs in as it
            self._by_email[account.email] = account

    async def load(self) -> None:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM accounts ORDER BY created_at")
        for row in rows:
            self._index(self._account(row))

    def get(self, account_id: str) -> Account | None:
        return self._by_id.get(account_id)

    def by_email(self, email: str) -> Account | None:
        return self._by_email.get(email.lower())

    async def fetch_by_email(self, email: str) -> Account | None:
        """Read an account another process (the CLI) may have added since start, and index it."""
        email = email.lower()
        # A row from before sealing has no hash yet (until the re-encryption pass reaches it): its plain email.
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM accounts WHERE email_hash = ? OR (email_hash IS NULL AND email = ?)",
            (self._pii.lookup(email), email))
        return self._indexed(row)

    async def fetch(self, account_id: str) -> Account | None:
        """Read an account another node (or the CLI) may have opened since start, and index it."""
        return self._indexed(await self._db.fetchone(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", (account_id,)))

    def _indexed(self, row: tuple | None) -> Account | None:
        if row is None:
            return None
        account = self._account(row)
        self._index(account)
        return account

    async def add(self, account: Account) -> None:
        """Reserve the email in memory (no await in between), persist, undo on failure."""
        email = account.email.lower()
        if email in self._by_email:
            raise EmailTaken(email)
        self._by_email[email] = account
        self._by_id[account.id] = account
        try:
            await self._db.write([Insert("accounts", ("id", "email", "email_hash", "password_hash", "role",
                                                      "created_at"),
                                         [(account.id, self._pii.seal(email, EMAIL), self._pii.lookup(email),
                                           account.password_hash, account.role, account.created_at)])])
        except BaseException:
            self._by_email.pop(email, None)
            self._by_id.pop(account.id, None)
            raise

    async def erase(self, account_id: str) -> Account | None:
        """Forget an account's email and password: the row stays (orders and the ledger name its id), nobody can
        sign in as it, and its email can open a new account. The account as it was, or None if unknown."""
        account = self._by_id.get(account_id) or await self.fetch(account_id)
        if account is None:
            return None
        # Role "erased": the tokens issued to it name another role, so they stop working at once.
        erased = Account(account.id, "", "", "erased", account.created_at)
        await self._db.write([("UPDATE accounts SET email = ?, email_hash = NULL, password_hash = '', role = 'erased' "
                               "WHERE id = ?", (self._pii.seal("", EMAIL), account_id))])
        if self._by_email.get(account.email) is account:
            del self._by_email[account.email]
        self._by_id[account_id] = erased
        return account
