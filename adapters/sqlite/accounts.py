"""SQL storage of accounts: the accounts port's SQL. Emails are sealed (adapters/pii.py) and found by keyed hash.

Memory holds only the accounts used lately, by id and by email (two LRUs of `capacity` each); nothing is read at
start. A lookup that misses reads one row: by primary key, or by the `accounts_email_hash` unique index. The same
index refuses a second account for an email held only in the store; an email being registered in this process is
reserved in memory first, so two concurrent registrations here never both reach the write.
"""

from __future__ import annotations

from adapters.pii import PiiCipher
from adapters.sqlite.statements import SqlDatabase
from app.runtime.lru import LRU
from state.accounts import Account, EmailTaken
from state.ports import WriteConflict

_COLUMNS = "id, email, password_hash, role, created_at"
EMAIL = "accounts.email"  # the sealed column (and the associated data its values are sealed with)
CACHED = 100_000  # accounts held by id (and as many by email): auth.account_cache_entries
_TAKEN = "accounts.email_hash"


class SqliteAccountStore:
    """Accounts used lately, by id and by email, over the `accounts` table."""

    def __init__(self, db: SqlDatabase, pii: PiiCipher, capacity: int = CACHED) -> None:
        self._db = db
        self._pii = pii
        self.ids: LRU[str, Account] = LRU(capacity, "accounts")
        self.emails: LRU[str, Account] = LRU(capacity, "account_emails")
        self._adding: dict[str, Account] = {}  # emails being written by add(): reserved until it ends
        # Bumped when an account changes here (erasure): a read that started before it is not cached, so an erased
        # account read just before its erasure cannot come back into memory.
        self._generation = 0

    def _account(self, row: tuple) -> Account:
        account_id, email, password_hash, role, created_at = row
        return Account(account_id, self._pii.open(email, EMAIL), password_hash, role, created_at)

    def _hold(self, account: Account) -> None:
        self.ids.put(account.id, account)
        if account.email:  # an erased account has none: nobody signs in as it
            self.emails.put(account.email, account)

    async def load(self) -> None:
        """Nothing to read: accounts are read on first use (a start costs the same with ten or ten million)."""

    def get(self, account_id: str) -> Account | None:
        """The account if memory holds it; None may mean only that it was not read lately (fetch() reads it)."""
        return self.ids.get(account_id)

    def by_email(self, email: str) -> Account | None:
        """The account of this email if memory holds it (fetch_by_email() reads the store)."""
        return self.emails.get(email.strip().lower())

    async def fetch_by_email(self, email: str) -> Account | None:
        """Read the account of this email from the store, and hold it."""
        email = email.strip().lower()
        generation = self._generation
        # A row from before sealing has no hash yet (until the re-encryption pass reaches it): its plain email.
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM accounts WHERE email_hash = ? OR (email_hash IS NULL AND email = ?)",
            (self._pii.lookup(email), email))
        return self._read(row, generation)

    async def fetch(self, account_id: str) -> Account | None:
        """Read an account from the store (not read lately, or opened by another node or the CLI), and hold it."""
        generation = self._generation
        return self._read(await self._db.fetchone(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", (account_id,)),
                          generation)

    def _read(self, row: tuple | None, generation: int) -> Account | None:
        if row is None:
            return None
        account = self._account(row)
        if generation == self._generation:  # nothing changed here while it was read
            self._hold(account)
        return account

    async def add(self, account: Account) -> None:
        """Reserve the email in memory (no await in between), persist, undo on failure. EmailTaken when memory
        holds an account of this email, or the store does (its unique index on the email's keyed hash)."""
        email = account.email.lower()
        if email in self._adding or email in self.emails:
            raise EmailTaken(email)
        self._adding[email] = account
        try:
            # Guarded: an email stored already (by another node, or only in the store) inserts no row, and the
            # write fails with WriteConflict on either engine.
            await self._db.write([(
                "INSERT OR IGNORE INTO accounts(id, email, email_hash, password_hash, role, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (account.id, self._pii.seal(email, EMAIL), self._pii.lookup(email), account.password_hash,
                 account.role, account.created_at), 1, _TAKEN)])
        except WriteConflict as exc:
            if exc.what == _TAKEN:
                raise EmailTaken(email) from None
            raise
        finally:
            del self._adding[email]
        self._hold(account)

    async def erase(self, account_id: str) -> Account | None:
        """Forget an account's email and password: the row stays (orders and the ledger name its id), nobody can
        sign in as it, and its email can open a new account. The account as it was, or None if unknown."""
        account = self.ids.get(account_id) or await self.fetch(account_id)
        if account is None:
            return None
        # Role "erased": the tokens issued to it name another role, so they stop working at once.
        erased = Account(account.id, "", "", "erased", account.created_at)
        await self._db.write([("UPDATE accounts SET email = ?, email_hash = NULL, password_hash = '', role = 'erased' "
                               "WHERE id = ?", (self._pii.seal("", EMAIL), account_id))])
        self._generation += 1
        held = self.emails.peek(account.email) if account.email else None
        if held is not None and held.id == account_id:
            self.emails.pop(account.email)
        self.ids.put(account_id, erased)
        return account
