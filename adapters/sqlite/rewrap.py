"""The re-encryption pass: every sealed column brought under the PII keyring's current key, in batches.

It runs in the server after a key rotation (and once at start, which also seals and hashes rows written before
personal data was sealed). Each row is rewritten only if it still holds what the pass read (a guarded UPDATE), so a
concurrent write wins and is already under the current key; reads work throughout, since the ring still holds the
previous keys. The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from adapters.pii import PiiCipher, is_lookup_hash
from adapters.sqlite import accounts, idempotency, loyalty, outbox, suppressions
from adapters.sqlite.statements import SqlDatabase
from state.outbox import EmailEvent, OutboxMessage
from state.suppressions import Suppression

Row = tuple[Any, ...]


class PersonalDataRewrap:
    def __init__(self, db: SqlDatabase, pii: PiiCipher) -> None:
        self._db = db
        self._pii = pii
        self.rewritten = 0  # rows rewritten since start

    async def run(self, batch: int = 500) -> dict[str, int]:
        """One pass over every table holding sealed data; the rows rewritten per table."""
        tables: list[tuple[str, tuple[str, ...], str, Callable[[Row], tuple[str, tuple] | None]]] = [
            ("accounts", ("id",), "id, email, email_hash, role", self._account),
            ("loyalty_members", ("user_id",), "user_id, body", lambda r: self._body(
                "loyalty_members", "user_id", r, loyalty.MEMBER)),
            ("suppressions", ("identifier", "channel"), "identifier, channel, body", self._suppression),
            ("outbox", ("id",), "id, body, recipient", self._message),
            ("email_events", ("id",), "id, body, email_hash", self._event),
            ("idempotency", ("scope", "key"), "scope, key, body", self._reply),
        ]
        done: dict[str, int] = {}
        for table, keys, columns, rewrite in tables:
            done[table] = 0
            after: tuple | None = None
            while True:
                where = f"WHERE ({', '.join(keys)}) > ({', '.join('?' * len(keys))}) " if after else ""
                rows = await self._db.fetchall(
                    f"SELECT {columns} FROM {table} {where}ORDER BY {', '.join(keys)} LIMIT ?",
                    (*(after or ()), batch))
                if not rows:
                    break
                after = tuple(rows[-1][:len(keys)])
                statements = [s for s in map(rewrite, rows) if s is not None]
                if statements:
                    counts = await self._db.write(statements)
                    done[table] += sum(counts)
                if len(rows) < batch:
                    break
        self.rewritten += sum(done.values())
        return done

    def _account(self, row: Row) -> tuple[str, tuple] | None:
        account_id, email, email_hash, role = row
        plain = self._pii.open(email, accounts.EMAIL)
        wanted_hash = self._pii.lookup(plain) if plain else None  # an erased account has no email to find
        if self._pii.is_current(email) and email_hash == wanted_hash:
            return None
        return ("UPDATE accounts SET email = ?, email_hash = ? WHERE id = ? AND email = ?",
                (self._pii.seal(plain, accounts.EMAIL), wanted_hash, account_id, email))

    def _body(self, table: str, key: str, row: Row, column: str) -> tuple[str, tuple] | None:
        record_id, body = row
        if self._pii.is_current(body):
            return None
        return (f"UPDATE {table} SET body = ? WHERE {key} = ? AND body = ?",
                (self._pii.seal(self._pii.open(body, column), column), record_id, body))

    def _suppression(self, row: Row) -> tuple[str, tuple] | None:
        identifier, channel, body = row
        if self._pii.is_current(body) and is_lookup_hash(identifier):
            return None
        plain = self._pii.open(body, suppressions.BODY)
        entry = msgspec.json.decode(plain, type=Suppression)
        hashed = entry.identifier if is_lookup_hash(entry.identifier) else self._pii.lookup(entry.identifier)
        return ("UPDATE suppressions SET identifier = ?, body = ? WHERE identifier = ? AND channel = ? AND body = ?",
                (hashed, self._pii.seal(plain, suppressions.BODY), identifier, channel, body))

    def _message(self, row: Row) -> tuple[str, tuple] | None:
        message_id, body, recipient = row
        if self._pii.is_current(body) and (recipient is not None or not body):
            return None
        plain = self._pii.open(body, outbox.MESSAGE)
        message = msgspec.json.decode(plain, type=OutboxMessage)
        return ("UPDATE outbox SET body = ?, recipient = ?, user_id = ? WHERE id = ? AND body = ?",
                (self._pii.seal(plain, outbox.MESSAGE), self._pii.lookup(message.to) if message.to else None,
                 message.user_id, message_id, body))

    def _event(self, row: Row) -> tuple[str, tuple] | None:
        event_id, body, email_hash = row
        if self._pii.is_current(body) and email_hash is not None:
            return None
        plain = self._pii.open(body, outbox.EVENT)
        event = msgspec.json.decode(plain, type=EmailEvent)
        wanted = self._pii.lookup(event.email) if event.email else None
        if self._pii.is_current(body) and email_hash == wanted:  # an event with no address (or an erased one)
            return None
        return ("UPDATE email_events SET body = ?, email_hash = ? WHERE id = ? AND body = ?",
                (self._pii.seal(plain, outbox.EVENT), wanted, event_id, body))

    def _reply(self, row: Row) -> tuple[str, tuple] | None:
        scope, key, body = row
        body = bytes(body)
        if not body or self._pii.is_current(body):  # an in-flight claim holds no reply yet
            return None
        return ("UPDATE idempotency SET body = ? WHERE scope = ? AND key = ? AND body = ?",
                (self._pii.seal_bytes(self._pii.open_bytes(body, idempotency.BODY), idempotency.BODY), scope, key,
                 body))
