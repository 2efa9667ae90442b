"""SQL storage of outbox: the outbox port's SQL. Bodies are sealed (adapters/pii.py); a message is found by the
keyed hash of its recipient or by its customer, an email event by its message or the hash of its address
(erasure)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from adapters.pii import PiiCipher
from adapters.sqlite.statements import SqlDatabase
from state.outbox import EmailEvent, OutboxMessage, _encode, _message

MESSAGE = "outbox.body"
EVENT = "email_events.body"
_event = msgspec.json.Decoder(EmailEvent)


class SqliteOutboxStore:
    def __init__(self, db: SqlDatabase, pii: PiiCipher) -> None:
        self._db = db
        self._pii = pii

    def _decode(self, body: str) -> OutboxMessage:
        return _message.decode(self._pii.open(body, MESSAGE))

    def _seal(self, message: OutboxMessage) -> str:
        return self._pii.seal(_encode(message).decode(), MESSAGE)

    async def unfinished(self, after: tuple[float, str], limit: int) -> list[OutboxMessage]:
        """Up to `limit` pending messages after `after` (created_at, id), in that order: a page of the queue."""
        at, message_id = after
        rows = await self._db.fetchall(
            "SELECT body FROM outbox WHERE state='pending' AND (created_at > ? OR (created_at = ? AND id > ?)) "
            "ORDER BY created_at, id LIMIT ?", (at, at, message_id, limit))
        return [self._decode(r[0]) for r in rows]

    async def get(self, message_id: str) -> OutboxMessage | None:
        row = await self._db.fetchone("SELECT body FROM outbox WHERE id=?", (message_id,))
        return self._decode(row[0]) if row else None

    async def insert(self, message: OutboxMessage) -> bool:
        """Store a new message; False if one with this id exists already (the same message is never queued twice)."""
        counts = await self._db.write([(
            "INSERT OR IGNORE INTO outbox(id, state, created_at, body, recipient, user_id) VALUES (?,?,?,?,?,?)",
            (message.id, message.state, message.created_at, self._seal(message),
             self._pii.lookup(message.to) if message.to else None, message.user_id))])
        return counts[0] == 1

    async def update(self, message: OutboxMessage) -> None:
        await self._db.write([("UPDATE outbox SET state=?, body=? WHERE id=?",
                               (message.state, self._seal(message), message.id))])

    async def mark_sent(self, message: OutboxMessage, event: EmailEvent) -> None:
        """The message's new state and its `sent` event, in one commit."""
        await self._db.write([("UPDATE outbox SET state=?, body=? WHERE id=?",
                               (message.state, self._seal(message), message.id)),
                              self._event_statement(event)])

    def _event_statement(self, event: EmailEvent):
        return ("INSERT OR IGNORE INTO email_events(id, activation_id, message_id, kind, at, body, email_hash)"
                " VALUES (?,?,?,?,?,?,?)",
                (event.id, event.activation_id, event.message_id, event.kind, event.at,
                 self._pii.seal(_encode(event).decode(), EVENT),
                 self._pii.lookup(event.email) if event.email else None))

    async def record_event(self, event: EmailEvent) -> bool:
        """Record an email event once (by id); False for a repeat."""
        counts = await self._db.write([self._event_statement(event)])
        return counts[0] == 1

    async def events(self, activation_id: str | None) -> list[EmailEvent]:
        if activation_id is None:
            rows = await self._db.fetchall("SELECT body FROM email_events ORDER BY at")
        else:
            rows = await self._db.fetchall("SELECT body FROM email_events WHERE activation_id=? ORDER BY at",
                                           (activation_id,))
        return [_event.decode(self._pii.open(r[0], EVENT)) for r in rows]

    async def erase(self, user_id: str, addresses: Sequence[str]) -> tuple[list[str], int]:
        """Blank a customer's own mail and the email events about it, keeping each row's kind, state and time (the
        counts reports are made of): the ids of their messages that were still pending (now "suppressed", never
        sent), and how many rows were rewritten.

        Only what is theirs: the messages queued for them (every message carries its customer's id) and the events
        about those messages. `addresses` (the customer's own) find only the events that name an address and no
        message of ours (a provider's report about mail we cannot match), and only for an address no other
        customer's mail went to: an address someone merely typed in as theirs never erases another's records."""
        rows = await self._db.fetchall("SELECT body FROM outbox WHERE user_id = ?", (user_id,))
        cancelled: list[str] = []
        statements: list = []
        for (body,) in rows:
            message = self._decode(body)
            state = message.state
            if state == "pending":
                state = "suppressed"
                cancelled.append(message.id)
            blank = msgspec.structs.replace(message, to="", subject="", html="", text="", user_id=None, state=state,
                                            last_error="erased" if state != message.state else message.last_error)
            statements.append(("UPDATE outbox SET state=?, body=?, recipient=NULL, user_id=NULL WHERE id=?",
                               (blank.state, self._seal(blank), blank.id)))
        # An event about one of our messages names the message and its address (read through the address's index).
        events = list(await self._db.fetchall(
            "SELECT id, body FROM email_events WHERE email_hash IN (SELECT recipient FROM outbox WHERE user_id = ?) "
            "AND message_id IN (SELECT id FROM outbox WHERE user_id = ?)", (user_id, user_id)))
        hashes = sorted({self._pii.lookup(a) for a in addresses if a})
        if hashes:
            marks = ",".join("?" * len(hashes))
            theirs = await self._db.fetchall(
                f"SELECT DISTINCT recipient FROM outbox WHERE recipient IN ({marks}) "
                "AND user_id IS NOT NULL AND user_id <> ?", (*hashes, user_id))
            hashes = sorted(set(hashes) - {r[0] for r in theirs})
        if hashes:
            marks = ",".join("?" * len(hashes))
            events += await self._db.fetchall(
                f"SELECT id, body FROM email_events WHERE email_hash IN ({marks}) "
                "AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.id = email_events.message_id)", tuple(hashes))
        for _, body in events:
            event = _event.decode(self._pii.open(body, EVENT))
            blank_event = msgspec.structs.replace(event, email=None, details={})
            statements.append(("UPDATE email_events SET body=?, email_hash=NULL WHERE id=?",
                               (self._pii.seal(_encode(blank_event).decode(), EVENT), event.id)))
        if statements:
            await self._db.write(statements)
        return cancelled, len(statements)
