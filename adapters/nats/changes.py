"""Telling the other nodes which records changed, over NATS, so their memory follows the shared system of record.

After a node commits a change to PostgreSQL it publishes `{"node", "kind", "ids"}` on `contrail.changes` (every
node subscribes, none in a queue group: each must hear every notice). A node hearing another's notice reads those
records back from the database and puts them in its memory (`apply`), so the notice says only *what* changed:
PostgreSQL stays the one truth, a notice applied twice changes nothing, and one applied late catches up.

Publishing never blocks a request: notices wait in a bounded queue for the publisher task; a full queue (NATS
unreachable for long) drops and counts them (`contrail_record_changes_total{event="dropped"}`), as does a node
applying more than MAX_APPLYING notices at once; a node that missed notices catches up when it restarts.
nats-py reconnects by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from app.runtime.metrics import Metrics

log = logging.getLogger("contrail.nats")

SUBJECT = "contrail.changes"
MAX_IDS = 500  # ids in one notice; more go in several
MAX_APPLYING = 1_000  # notices being applied at once; past it a notice is dropped and counted (a restart catches up)


class Notice(msgspec.Struct, frozen=True):
    node: str
    kind: str
    ids: list[str]  # the records' ids; for feedback ("feedback"), the events themselves (append-only facts)


_decode = msgspec.json.Decoder(Notice).decode
_encode = msgspec.json.Encoder().encode


class NatsChangeFeed:
    def __init__(self, url: str, node_id: str, metrics: Metrics,
                 apply: Callable[[str, list[str]], Awaitable[None]], *, capacity: int = 10_000,
                 subject: str = SUBJECT) -> None:
        self._url = url
        self._node = node_id
        self._apply = apply
        self._subject = subject
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(capacity)
        self._nc: Client | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._applying: set[asyncio.Task[None]] = set()
        # Notices heard while the node is still loading wait for it: applied to half-loaded memory, a record
        # loaded after its notice would be counted twice.
        self._loaded = asyncio.Event()
        counter = metrics.record_changes
        self._sent, self._received, self._applied, self._dropped, self._failed = (
            counter.labels(e) for e in ("sent", "received", "applied", "dropped", "failed"))
        metrics.watch_queue("record_changes", self._queue.qsize)

    async def start(self) -> None:
        self._nc = await nats.connect(self._url, name=f"contrail-{self._node}-changes", max_reconnect_attempts=-1,
                                      connect_timeout=5, allow_reconnect=True)
        await self._nc.subscribe(self._subject, cb=self._heard)
        self._publisher = asyncio.create_task(self._publish(), name="record-changes")

    def changed(self, kind: str, ids: Sequence[str]) -> None:
        """These records were committed: tell the other nodes (never waits)."""
        for start in range(0, len(ids), MAX_IDS):
            try:
                self._queue.put_nowait(_encode(Notice(self._node, kind, list(ids[start:start + MAX_IDS]))))
            except asyncio.QueueFull:
                self._dropped.inc()

    async def _publish(self) -> None:
        assert self._nc is not None
        while True:
            body = await self._queue.get()
            try:
                await self._nc.publish(self._subject, body)
                self._sent.inc()
            except Exception as exc:  # disconnected beyond nats-py's buffer: the notice is lost, counted
                self._failed.inc()
                log.warning("record change not sent", extra={"error": repr(exc)[:200]})

    async def _heard(self, msg: Msg) -> None:
        try:
            notice = _decode(msg.data)
        except msgspec.DecodeError:
            self._failed.inc()
            log.warning("unreadable record change notice", extra={"subject": msg.subject})
            return
        if notice.node == self._node:
            return
        self._received.inc()
        if len(self._applying) >= MAX_APPLYING:
            self._dropped.inc()
            return
        task = asyncio.create_task(self._applied_one(notice))  # the subscription takes the next at once
        self._applying.add(task)
        task.add_done_callback(self._applying.discard)

    def loaded(self) -> None:
        """The node's memory is loaded: apply what was heard meanwhile, and from now on."""
        self._loaded.set()

    async def _applied_one(self, notice: Notice) -> None:
        await self._loaded.wait()
        try:
            await self._apply(notice.kind, notice.ids)
            self._applied.inc()
        except Exception as exc:  # the database briefly unreachable: the next notice or a restart catches up
            self._failed.inc()
            log.warning("record change not applied", extra={"kind": notice.kind, "error": repr(exc)[:200]})

    async def flush(self) -> None:
        """Wait until what was queued has been handed to NATS (tests; shutdown)."""
        while not self._queue.empty():
            await asyncio.sleep(0.005)
        if self._nc is not None and self._nc.is_connected:
            await self._nc.flush(timeout=5)

    async def close(self) -> None:
        if self._nc is None:
            return
        try:
            await asyncio.wait_for(self.flush(), 5)
        except (TimeoutError, nats.errors.Error):
            pass
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
        await asyncio.gather(*self._applying, return_exceptions=True)
        await self._nc.drain()
        self._nc = None
