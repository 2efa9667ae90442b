"""In-app messages: kept in a durable inbox, and pushed live to the customer's open app connections."""

from __future__ import annotations

import msgspec

from app import ids
from app.hub import Hub
from app.runtime.clock import Clock
from state.inbox import InAppMessage
from state.ports import InboxStore


class InAppService:
    def __init__(self, store: InboxStore, hub: Hub, clock: Clock) -> None:
        self._store = store
        self.hub = hub
        self._clock = clock
        self._connected: dict[str, int] = {}

    @staticmethod
    def topic(user_id: str) -> str:
        return f"inapp:{user_id}"

    def connect(self, user_id: str):
        self._connected[user_id] = self._connected.get(user_id, 0) + 1
        return self.hub.subscribe("inapp", [self.topic(user_id)])

    def disconnect(self, user_id: str) -> None:
        left = self._connected.get(user_id, 0) - 1
        if left > 0:
            self._connected[user_id] = left
        else:
            self._connected.pop(user_id, None)

    def connected(self, user_id: str) -> bool:
        return user_id in self._connected

    async def deliver(self, user_id: str, subject: str, text: str, activation_id: str | None = None) -> InAppMessage:
        """Into the inbox (durably), then live to any open connection of the customer."""
        message = InAppMessage(f"inapp_{ids.token_hex(10)}", user_id, subject, text, self._clock.now(),
                               activation_id)
        await self._store.add(message)
        self.hub.publish(self.topic(user_id), msgspec.structs.asdict(message), message.at)
        return message

    async def inbox(self, user_id: str, limit: int, before: float | None) -> list[InAppMessage]:
        return await self._store.newest(user_id, limit, before)
