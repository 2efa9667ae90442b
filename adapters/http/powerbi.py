"""Power BI push dataset exporter: rows for a live dashboard tile (bookings, campaign sends, bids won).

  POST {base_url}/v1.0/myorg/datasets/{dataset_id}/tables/{table}/rows              (My workspace)
  POST {base_url}/v1.0/myorg/groups/{group_id}/datasets/{dataset_id}/tables/{table}/rows   (a workspace:
       integrations.powerbi_group_id)
       Authorization: Bearer <Microsoft Entra access token>   {"rows": [{...}, ...]}   -> 200 {}
  Errors come as {"error": {"code": ..., "message": ...}}; throttling as 429 with Retry-After.

Power BI's limits for push datasets (learn.microsoft.com, "Push semantic model limitations"): at most 10,000 rows
per POST and 120 POST rows requests per minute per dataset. `push_rows` splits rows into POSTs of at most
`max_rows_per_post` and a rolling-minute limiter makes the 121st POST in any 60 s wait until the oldest one is a
minute old; a retried POST counts, and waits, like any other. (Power BI also caps rows per hour and, for tables
over 250,000 rows, POSTs per hour; those are not enforced here: a 429 then is retried after its Retry-After.)

Off by default: an exporter built with `enabled=False` (the default) sends nothing and `push_rows` answers 0; the
caller decides to turn it on. Microsoft has announced the retirement of real-time streaming in Power BI (streaming
and push semantic models); new dashboards should plan for Microsoft Fabric Real-Time Intelligence instead, and this
exporter is kept for teams whose existing push datasets still take rows.

A token is either a string or an async callable answering a fresh one (Entra tokens live about an hour)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

from adapters.http.retry import OnAttempt, RetryPolicy, Sleep, ToolClient

log = logging.getLogger("contrail.integrations")

MAX_ROWS_PER_POST = 10_000
MAX_POSTS_PER_MINUTE = 120

Token = str | Callable[[], Awaitable[str]]


class RollingWindowLimiter:
    """At most `limit` acquisitions in any `window_s` seconds; `acquire` waits (through the injected sleep) until one
    is free. The clock is monotonic seconds."""

    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.window_s:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                wait = self._sent[0] + self.window_s - now
                self.waited_s += wait
                await self._sleep(wait)


class PowerBIExporter(ToolClient):
    tool = "powerbi"

    def __init__(self, base_url: str, dataset_id: str, token: Token, *, group_id: str | None = None,
                 enabled: bool = False, max_rows_per_post: int = MAX_ROWS_PER_POST,
                 posts_per_minute: int = MAX_POSTS_PER_MINUTE, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep | None = None, policy: RetryPolicy | None = None,
                 on_attempt: OnAttempt | None = None) -> None:
        super().__init__(base_url, policy=policy, on_attempt=on_attempt, sleep=sleep)
        if not 1 <= max_rows_per_post <= MAX_ROWS_PER_POST:
            raise ValueError(f"max_rows_per_post must be 1..{MAX_ROWS_PER_POST}")
        self.dataset_id = dataset_id
        self.group_id = group_id
        self.enabled = enabled
        self.max_rows_per_post = max_rows_per_post
        self._token = token
        self.limiter = RollingWindowLimiter(posts_per_minute, 60.0, clock=clock, sleep=self._sleep)

    def _rows_path(self, table: str) -> str:
        group = f"/groups/{quote(self.group_id, safe='')}" if self.group_id else ""
        return (f"/v1.0/myorg{group}/datasets/{quote(self.dataset_id, safe='')}"
                f"/tables/{quote(table, safe='')}/rows")

    async def push_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Add rows to a table of the push dataset; answers the number of POSTs sent (0 when disabled or no rows).
        Raises IntegrationError on the first batch Power BI refuses; the batches before it stay added."""
        if not self.enabled or not rows:
            return 0
        posts = 0
        for start in range(0, len(rows), self.max_rows_per_post):
            batch = list(rows[start:start + self.max_rows_per_post])
            token = self._token if isinstance(self._token, str) else await self._token()
            await self._call("POST", self._rows_path(table), json={"rows": batch},
                             headers={"Authorization": f"Bearer {token}"}, before_attempt=self.limiter.acquire)
            posts += 1
        log.debug("rows pushed to Power BI", extra={"table": table, "rows": len(rows), "posts": posts})
        return posts
