"""SQLite storage of outbox: the outbox port's SQL."""

from __future__ import annotations

import msgspec

from adapters.sqlite.statements import SqlDatabase
from state.outbox import EmailEvent, OutboxMessage, _encode, _message


class SqliteOutboxStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def unfinished(self) -> list[OutboxMessage]:
        rows = await self._db.fetchall("SELECT body FROM outbox WHERE state='pending' ORDER BY created_at")
        return [_message.decode(r[0]) for r in rows]

    async def get(self, message_id: str) -> OutboxMessage | None:
        row = await self._db.fetchone("SELECT body FROM outbox WHERE id=?", (message_id,))
        return _message.decode(row[0]) if row else None

    async def insert(self, message: OutboxMessage) -> bool:
        """Store a new message; False if one with this id exists already (the same message is never queued twice)."""
        counts = await self._db.write([("INSERT OR IGNORE INTO outbox(id, state, created_at, body) VALUES (?,?,?,?)",
                                        (message.id, message.state, message.created_at, _encode(message).decode()))])
        return counts[0] == 1

    async def update(self, message: OutboxMessage) -> None:
        await self._db.write([("UPDATE outbox SET state=?, body=? WHERE id=?",
                               (message.state, _encode(message).decode(), message.id))])

    async def mark_sent(self, message: OutboxMessage, event: EmailEvent) -> None:
        """The message's new state and its `sent` event, in one commit."""
        await self._db.write([("UPDATE outbox SET state=?, body=? WHERE id=?",
                               (message.state, _encode(message).decode(), message.id)),
                              self._event_statement(event)])

    @staticmethod
    def _event_statement(event: EmailEvent):
        return ("INSERT OR IGNORE INTO email_events(id, activation_id, message_id, kind, at, body)"
                " VALUES (?,?,?,?,?,?)",
                (event.id, event.activation_id, event.message_id, event.kind, event.at, _encode(event).decode()))

    async def record_event(self, event: EmailEvent) -> bool:
        """Record an email event once (by id); False for a repeat."""
        counts = await self._db.write([self._event_statement(event)])
        return counts[0] == 1

    async def events(self, activation_id: str | None) -> list[EmailEvent]:
        decode = msgspec.json.Decoder(EmailEvent).decode
        if activation_id is None:
            rows = await self._db.fetchall("SELECT body FROM email_events ORDER BY at")
        else:
            rows = await self._db.fetchall("SELECT body FROM email_events WHERE activation_id=? ORDER BY at",
                                           (activation_id,))
        return [decode(r[0]) for r in rows]
