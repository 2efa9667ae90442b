"""log_event(): the never-blocking analytics event log.

A bounded in-memory queue feeds a batch writer that flushes to its own SQLite file when
`flush_rows` events are waiting or the oldest has waited `flush_interval_ms`. A full
queue drops the event and counts it: the hot path never waits on analytics.

The most frequent events (bids, no-bids, offers shown, ingested channel events: TALLIED) can be counted instead of
written whole: each is added to a total per window (`analytics.totals_s`) and key (a bid's campaign, a no-bid's
reason, an offer's bundle, a channel event's source and type), written at each flush as one `<type>Totals` row (its
`at` the window's start: {"seconds", key fields, "count", sum}); a sample of them (`analytics.sample_bids`,
`sample_offers`, `sample_channel_events`, after the first `analytics.whole_per_s` of each second,
which are all kept) is still written whole, marked `"sampled":true` (already in a total, so counters skip it). At a
rate of 1 nothing is counted: every event is written whole, unmarked, as before.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import msgspec

from app.hub import Hub
from app.runtime.clock import Clock
from app.runtime.metrics import Metrics
from state.eventlog import StoredEvent
from state.ports import EventLogStore

log = logging.getLogger("contrail.eventlog")
_encoder = msgspec.json.Encoder()
_encode, _encode_lines = _encoder.encode, _encoder.encode_lines
# type -> (the fields a total is kept per, the field summed or ""): what `<type>Totals` rows hold.
TALLIED: dict[str, tuple[tuple[str, ...], str]] = {
    "Bid": (("campaign_id",), "price"), "DspBid": (("campaign_id",), "price"), "NoBid": (("reason",), ""),
    "OfferGenerated": (("bundle",), "total_cents"),
    "ChannelEvent": (("source", "type"), "amount_cents")}
SAMPLED = b',"sampled":true}'  # closes a sampled whole record's JSON object


TRIM_ABOVE, TRIM_TO = 0.9, 0.8  # shares of analytics.max_bytes: when the size budget trims, and down to what
PAYLOAD_PAGE = 5_000  # payloads a paged reader holds at a time
_ROW_BYTES = 20  # an events row's id, time and record header, about


def _field(payload: Any, name: str) -> Any:
    return payload.get(name) if isinstance(payload, dict) else getattr(payload, name, None)


def written_behind(log_event: Callable[[str, Any], object]) -> Callable[[str, Any], Awaitable[None]]:
    """A `log_kept` for a service given only a `log_event` (a tool's or a test's): the event is queued as that one
    logs it, not awaited to the store."""
    async def log(type_: str, payload: Any) -> None:
        log_event(type_, payload)
    return log


class EventLog:
    def __init__(self, store: EventLogStore, hub: Hub, clock: Clock, metrics: Metrics, *,
                 capacity: int, flush_rows: int, flush_interval_ms: int, sample: dict[str, float] | None = None,
                 whole_per_s: int = 0, totals_s: int = 1, max_totals: int = 100_000) -> None:
        self._store = store
        self._hub = hub
        self._clock = clock
        self._metrics = metrics
        self._capacity = capacity
        self._flush_rows = flush_rows
        self._interval = flush_interval_ms / 1000
        self._queue: deque[tuple[float, str, str]] = deque()
        self._flushing = asyncio.Lock()  # one flush at a time (flush)
        self._ready = asyncio.Event()
        self.dropped = 0
        self.written = 0
        # Tallied types written at a rate below 1 (the others are written whole).
        self._sample = {t: r for t, r in (sample or {}).items() if t in TALLIED and r < 1}
        self._whole_per_s = whole_per_s
        self._totals_s = totals_s
        self._max_totals = max_totals
        # (type, window start, key) -> [count, sum]: bounded by max_totals, emptied at every flush.
        self._totals: dict[tuple[str, int, tuple[str, ...]], list] = {}
        self._whole_second: dict[str, tuple[int, int]] = {}  # type -> (second, whole records kept in it)
        self._random = random.Random()
        metrics.watch_queue("event_log", lambda: len(self._queue))
        metrics.watch_queue("event_totals", lambda: len(self._totals))

    def log_event(self, type_: str, payload: Any) -> bool:
        """Record an event and publish it live; returns False if it was dropped."""
        return self.log_events(type_, (payload,)) == 1

    def log_events(self, type_: str, payloads: Sequence[Any]) -> int:
        """Record and publish several events of one type at once; returns how many were kept."""
        at = self._clock.now()
        self._hub.publish_many(type_, payloads, at)
        rate = self._sample.get(type_)
        if rate is not None:
            return self._tally(type_, payloads, at, rate)
        queue = self._queue
        room = max(0, self._capacity - len(queue))
        kept = min(room, len(payloads))
        if kept == 1:
            queue.append((at, type_, _encode(payloads[0]).decode()))
        elif kept:  # one encoder call for them all: JSON lines, split (JSON text never holds a raw newline)
            queue.extend((at, type_, line) for line in _encode_lines(payloads[:kept]).decode().split("\n")[:-1])
        if kept:
            self._metrics.events_logged.inc(kept)
        if kept < len(payloads):
            self.dropped += len(payloads) - kept
            self._metrics.events_dropped.inc(len(payloads) - kept)
        if len(queue) >= self._flush_rows:
            self._ready.set()
        return kept

    async def log_kept(self, type_: str, payload: Any) -> None:
        """Record an event and publish it live, returning once it is written: for the few events a caller
        acknowledges and nothing could log again after a kill -9 (a click notice is recorded once; a reward signal's
        retry is not always sent). Written on its own, beside the queue; if the store fails it is queued instead,
        as `log_event` would have. Not for tallied types (a bid is counted in its second's total)."""
        at = self._clock.now()
        self._hub.publish_many(type_, (payload,), at)
        row = (at, type_, _encode(payload).decode())
        self._metrics.events_logged.inc()
        try:
            await self._store.append_batch([row])
        except Exception as exc:
            log.warning("event log write failed; the event is queued", extra={"type": type_, "error": repr(exc)})
            if len(self._queue) < self._capacity:
                self._queue.append(row)
            else:
                self.dropped += 1
                self._metrics.events_dropped.inc()
            return
        self.written += 1
        self._metrics.events_written.inc()
        self._metrics.events_bytes_written.inc(len(row[2]) + len(type_) + _ROW_BYTES)

    def _tally(self, type_: str, payloads: Sequence[Any], at: float, rate: float) -> int:
        """Add events to their window's totals and keep a sample of them whole; how many were counted."""
        key_fields, sum_field = TALLIED[type_]
        window = int(at // self._totals_s) * self._totals_s
        totals, queue = self._totals, self._queue
        second = int(at)
        seen_second, whole = self._whole_second.get(type_, (second, 0))
        if seen_second != second:
            whole = 0
        counted = dropped = 0
        for payload in payloads:
            key = (type_, window, tuple(str(_field(payload, f) or "") for f in key_fields))
            total = totals.get(key)
            if total is None:
                if len(totals) >= self._max_totals:  # more keys than the bound before a flush: lost, counted
                    dropped += 1
                    continue
                total = totals[key] = [0, 0]
            total[0] += 1
            if sum_field:
                total[1] += _field(payload, sum_field) or 0
            counted += 1
            if whole < self._whole_per_s or self._random.random() < rate:
                whole += 1
                if len(queue) < self._capacity:
                    raw = _encode(payload)
                    # A JSON object gets the mark; the count is in the totals already, so readers skip it.
                    queue.append((at, type_, (raw[:-1] + SAMPLED if raw[-1:] == b"}" and len(raw) > 2 else raw)
                                  .decode()))
                else:
                    self._metrics.events_sample_dropped.inc()
        self._whole_second[type_] = (second, whole)
        if counted:
            self._metrics.events_logged.inc(counted)
        if dropped:
            self.dropped += dropped
            self._metrics.events_dropped.inc(dropped)
        if len(queue) >= self._flush_rows:
            self._ready.set()
        return counted

    def _close_totals(self) -> None:
        """Queue every total as a `<type>Totals` row (the queue's bound does not apply: the totals hold counts of
        events already accepted, and are bounded themselves)."""
        if not self._totals:
            return
        totals, self._totals = self._totals, {}
        seconds = self._totals_s
        for (type_, window, key), (count, amount) in totals.items():
            key_fields, sum_field = TALLIED[type_]
            row: dict[str, Any] = {"seconds": seconds, **dict(zip(key_fields, key, strict=True)), "count": count}
            if sum_field:
                row[f"{sum_field}_sum"] = round(amount, 6) if isinstance(amount, float) else amount
            self._queue.append((float(window), f"{type_}Totals", _encode(row).decode()))

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._totals)

    async def run(self) -> None:
        """Background writer: flush at N rows or T ms, forever."""
        while True:
            try:
                await asyncio.wait_for(self._ready.wait(), self._interval)
            except TimeoutError:
                pass
            self._ready.clear()
            try:
                await self.flush()
            except Exception as exc:  # keep the events queued and try again next tick
                log.error("event log flush failed", extra={"error": repr(exc), "pending": len(self._queue)})

    async def flush(self) -> int:
        """Write what is queued when the flush starts, in batches of at most `flush_rows`.

        Events logged while it writes wait for the next flush. A flush that chased them would
        never finish under steady traffic: at 6,800 bids a second it wrote 178 small batches a
        second instead of one, and the writer's handing the GIL back and forth cost the bidder
        about a tenth of its throughput.

        One flush at a time: a caller's flush returns once everything logged before it is written, including a
        batch the periodic flush had already taken (a retrain reading right after a flush missed such a batch)."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        total = 0
        self._close_totals()
        due = len(self._queue)
        while due > 0 and self._queue:
            n = min(due, len(self._queue), self._flush_rows)
            batch = [self._queue.popleft() for _ in range(n)]
            try:
                await self._store.append_batch(batch)
            except Exception:
                # Put them back in order so a transient failure loses nothing; the
                # capacity check in log_event keeps this bounded.
                self._queue.extendleft(reversed(batch))
                raise
            total += n
            due -= n
            self.written += n
            self._metrics.events_written.inc(n)
            # What the rows hold (their payload, type and a row's fixed cost): the file's growth, before indexes.
            self._metrics.events_bytes_written.inc(sum(len(p) + len(t) + _ROW_BYTES for _, t, p in batch))
        return total

    async def purge(self, before: float, limit: int) -> int:
        """Delete those of the oldest `limit` written events that happened before `before`."""
        return await self._store.purge(before, limit)

    async def trim(self, max_bytes: int, limit: int) -> int:
        """Keep the stored events under `max_bytes`: past 90% of it, delete the oldest, `limit` a commit, until
        they take 80% (room for the writes until the next pass). How many went."""
        used = await self._store.used_bytes()
        if not max_bytes or used <= max_bytes * TRIM_ABOVE:
            return 0
        deleted = 0
        while used > max_bytes * TRIM_TO:
            n = await self._store.purge_oldest(limit)
            if not n:
                break
            deleted += n
            used = await self._store.used_bytes()
        return deleted

    async def query(self, type_: str | None, since: float | None, after_id: int, limit: int) -> list[StoredEvent]:
        return await self._store.query(type_, since, after_id, limit)

    async def recent_payloads(self, type_: str, limit: int) -> list[str]:
        """The newest written payloads of one type (what is still queued is not included)."""
        return await self._store.recent_payloads(type_, limit)

    async def payload_pages(self, type_: str, limit: int, page: int = PAYLOAD_PAGE) -> AsyncIterator[list[str]]:
        """The newest `limit` written payloads of one type, a page at a time: the newest page first, each page
        oldest first. A retrain reading its hundreds of thousands of payloads at once left the server's memory a
        step higher each time (small strings freed between the long-lived objects allocated meanwhile); by pages,
        one page is alive at a time."""
        before = 2**62
        while limit > 0:
            rows = await self._store.payload_page(type_, before, min(page, limit))
            if not rows:
                return
            limit -= len(rows)
            before = rows[-1][0]
            yield [payload for _, payload in reversed(rows)]
