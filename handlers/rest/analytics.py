"""Reading the analytics event log back."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from app.eventlog import EventLog
from handlers.rest.common import Cursor, decode_cursor, encode_cursor, endpoint, json_response


class EventsQuery(msgspec.Struct, forbid_unknown_fields=True):
    type: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    since: Annotated[float, msgspec.Meta(ge=0)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    after: Cursor | None = None


class EventView(msgspec.Struct):
    id: int
    at: float
    type: str
    payload: msgspec.Raw


class EventPage(msgspec.Struct):
    items: list[EventView]
    next_cursor: str | None


class AnalyticsApi:
    """The analytics event log, read back."""

    def __init__(self, event_log: EventLog) -> None:
        self._event_log = event_log

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/analytics/events", self.events)

    @endpoint("Events from the analytics log, oldest first (filter by type and time)", tags=("analytics",),
              roles=("admin",), query=EventsQuery, response=EventPage)
    async def events(self, request: web.Request, principal, query: EventsQuery) -> web.Response:
        cursor = decode_cursor(query.after) or {}
        after_id = cursor.get("id", 0)
        if not isinstance(after_id, int):
            after_id = 0
        rows = await self._event_log.query(query.type, query.since, after_id, query.limit)
        nxt = encode_cursor({"id": rows[-1].id}) if len(rows) == query.limit else None
        return json_response(EventPage([EventView(r.id, r.at, r.type, r.payload) for r in rows], nxt))
