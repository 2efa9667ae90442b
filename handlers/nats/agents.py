"""Bid agents and ingest over NATS: subscribe, decode, authenticate, call one service, encode, reply.

Bids: `nats.agents` subscriptions to `nats.subject` in queue group `nats.queue`, so every request is
answered by exactly one agent of all the nodes on the server. Each request goes through the same
BidGateway as REST, gRPC and websockets; the answer goes to the message's reply subject:

- a bid: the OpenRTB BidResponse JSON, with `ext.agent_id` (`{node_id}-nats`);
- a no-bid: `{"id", "nbr", "ext": {"agent_id", "reason"}}` (nbr the OpenRTB code, reason ours);
- an error: `{"error": {"code", "message", "details"}, "agent_id"}`, the REST error envelope plus the agent
  (codes: invalid_request, payload_too_large, unauthenticated, forbidden, rate_limited, internal).

Ingest: `ingest.{source}.>` (queue group `ingest`: one node takes each message) feeds the ingest service
that POST /v1/channels/ingest feeds; an event without `source` gets the subject's, one naming another
source is refused. With a reply subject, the reply is the same IngestResult JSON or the error envelope.

Authentication: every message carries an API key in the `x-api-key` NATS header, checked by the one
Authenticator every protocol shares (exchange or admin for bids; partner or admin for ingest), and
charged to the same per-key rate limits. The NATS server's own accounts and subject permissions are
the transport boundary (who may connect, publish, and read replies) but name no caller Contrail knows:
the key is what says which exchange or partner sent the message, as on REST, gRPC and websockets.

A message is handed to a task and the agent takes the next one (at most `bidding.stream_max_in_flight`
in flight per process, then the agents wait: NATS holds the rest). One bad message gets an error reply;
the subscription lives on. close() drains: stop taking messages, finish those in flight, flush, close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from app.auth import UNDECIDED, Authenticator, Principal
from app.bidding.gateway import BidGateway
from app.channels.ingest import IngestService
from app.config import NatsConfig
from app.errors import CannotStart, DomainError, Forbidden, InvalidInput, PayloadTooLarge, Unauthenticated
from app.jsondepth import MAX_DEPTH, nesting_exceeds, refuse_left_open
from app.ratelimit import RateLimiter
from app.runtime.metrics import LoopCounter, Metrics
from app.runtime.tracing import CONSUMER, Tracing

log = logging.getLogger("contrail.nats")

API_KEY_HEADER = "x-api-key"
BID_ROLES = ("exchange", "admin")
INGEST_ROLES = ("admin", "partner")
INGEST_SUBJECT = "ingest.*.>"
INGEST_QUEUE = "ingest"
CONNECT_WITHIN_S = 10.0
_encode = msgspec.json.Encoder().encode


def _error(code: str, message: str, agent_id: str, details: Any = None) -> bytes:
    return _encode({"error": {"code": code, "message": message, "details": details}, "agent_id": agent_id})


class NatsAgents:
    """One NATS connection per process: the bid agents and the ingest subscription."""

    def __init__(self, config: NatsConfig, gateway: BidGateway, ingest: IngestService, authenticator: Authenticator,
                 limiter: RateLimiter, metrics: Metrics, agent_id: str, max_in_flight: int,
                 tracing: Tracing | None = None) -> None:
        self._config = config
        self._tracing = tracing or Tracing.off()
        self._gateway = gateway
        self._ingest = ingest
        self._authenticator = authenticator
        self._limiter = limiter
        self.agent_id = agent_id
        self._ext_bid = {"agent_id": agent_id}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task] = set()
        self._subs: list[Subscription] = []
        self._nc: Client | None = None
        self._closing = False
        self._unsubscribing: asyncio.Task | None = None
        self._messages = LoopCounter("contrail_nats_messages", "NATS messages handled, by kind and outcome",
                                     ["kind", "outcome"], metrics.registry)
        self._counted: dict[tuple[str, str], Any] = {}

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def _count(self, kind: str, outcome: str) -> None:
        child = self._counted.get((kind, outcome))
        if child is None:
            child = self._counted[(kind, outcome)] = self._messages.labels(kind, outcome)
        child.value += 1

    async def start(self) -> None:
        """Connect and subscribe; raises (and the start stops) when the server cannot be reached."""
        async def error(exc: Exception) -> None:
            if isinstance(exc, nats.errors.SlowConsumerError):  # the agents fell behind: NATS dropped one for us
                self._count("ingest" if exc.sub is not None and exc.sub.subject == INGEST_SUBJECT else "bid",
                            "slow_consumer")
                return
            log.warning("NATS error", extra={"error": repr(exc)[:300]})

        async def disconnected() -> None:
            if not self._closing:
                log.warning("NATS disconnected; reconnecting")

        async def reconnected() -> None:
            log.info("NATS reconnected")

        # Once connected, a lost server is retried for ever (the node stays up, /health/ready says so); one
        # that cannot be reached at the start stops the start, naming the key.
        try:
            self._nc = await asyncio.wait_for(nats.connect(
                self._config.url, name=self.agent_id, connect_timeout=2, max_reconnect_attempts=-1,
                reconnect_time_wait=0.5, error_cb=error, disconnected_cb=disconnected, reconnected_cb=reconnected),
                CONNECT_WITHIN_S)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            raise CannotStart(f"nats.url: cannot reach the NATS server at {_redacted(self._config.url)} within "
                               f"{CONNECT_WITHIN_S:g} s ({exc!r})") from None
        for _ in range(self._config.agents):
            self._subs.append(await self._nc.subscribe(self._config.subject, queue=self._config.queue,
                                                       cb=self._on_bid))
        if self._config.ingest:
            self._subs.append(await self._nc.subscribe(INGEST_SUBJECT, queue=INGEST_QUEUE, cb=self._on_ingest))
        await self._nc.flush()
        log.info("NATS bid agents subscribed", extra={"agents": self._config.agents, "subject": self._config.subject,
                                                      "queue": self._config.queue, "ingest": self._config.ingest})

    def stop_taking(self) -> None:
        """The first step of shutdown (Health.on_drain): unsubscribe at once, so the other nodes' agents get
        the requests from now on; what this node was handed is still answered (close() waits for it)."""
        if self._unsubscribing is None and self._nc is not None and not self._nc.is_closed:
            try:
                self._unsubscribing = asyncio.get_running_loop().create_task(self._unsubscribe())
            except RuntimeError:  # no loop running: close() unsubscribes
                pass

    async def _unsubscribe(self) -> None:
        self._closing = True
        for sub in self._subs:
            try:
                await sub.drain()  # UNSUB, then what was already delivered goes through the callback
            except Exception as exc:  # a lost connection: nothing more will come, the tasks still finish
                log.warning("NATS subscription drain failed", extra={"error": repr(exc)[:300]})

    async def close(self, grace_s: float) -> None:
        """Drain: stop taking messages (what was delivered still runs), finish in-flight work, flush, close."""
        nc = self._nc
        if nc is None or nc.is_closed:
            return
        self.stop_taking()
        if self._unsubscribing is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._unsubscribing), grace_s)
            except TimeoutError:
                log.warning("NATS subscriptions did not drain in time")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        try:
            await asyncio.wait_for(nc.drain(), grace_s)
        except Exception as exc:
            log.warning("NATS drain failed", extra={"error": repr(exc)[:300]})
            await nc.close()

    # ---- admission: size, credentials, rate limits (on the agent, before a task is spent) ----

    def _admit(self, msg: Msg, roles: tuple[str, ...]) -> Principal | Awaitable[Principal]:
        if len(msg.data) > self._config.max_payload_bytes:
            raise PayloadTooLarge(f"the message is {len(msg.data)} bytes; at most {self._config.max_payload_bytes} "
                                  "(nats.max_payload_bytes)")
        headers = msg.headers or {}
        key = headers.get(API_KEY_HEADER) or headers.get("X-Api-Key")
        if not key:
            raise Unauthenticated(f"send the API key in the {API_KEY_HEADER} NATS header")
        known = self._authenticator.identify_now(key, None)
        if known is UNDECIDED:
            return self._identify(key, roles)
        return self._allowed(known, roles)

    async def _identify(self, key: str, roles: tuple[str, ...]) -> Principal:
        return self._allowed(await self._authenticator.identify(key, None), roles)

    def _allowed(self, principal: Principal | None | Any, roles: tuple[str, ...]) -> Principal:
        if not isinstance(principal, Principal):
            raise Unauthenticated("unknown API key")
        if principal.role not in roles:
            raise Forbidden(f"needs role {' or '.join(roles)}")
        # NATS shows no client address: the key stands for it, so one partner's messages never spend another's
        # tokens (exchanges have their own per-key buckets and no per-address one, as on every protocol).
        self._limiter.check(principal, f"nats:{principal.scope}")
        return principal

    async def _dispatch(self, msg: Msg, kind: str, roles: tuple[str, ...],
                        work: Callable[[Msg, float], Awaitable[None]]) -> None:
        """An agent's callback: admit the message, then hand it to a task and take the next one."""
        started = time.perf_counter()
        try:
            admitted = self._admit(msg, roles)
            if not isinstance(admitted, Principal):
                await admitted
        except DomainError as exc:
            if isinstance(exc, Unauthenticated):
                try:
                    self._limiter.failed_authentication("nats")  # guessing keys is rate limited
                except DomainError:
                    pass
            self._count(kind, exc.code)
            await self._reply(msg, _error(exc.code, exc.message, self.agent_id, exc.details))
            return
        await self._slots.acquire()  # bounded work in flight: the agents wait, NATS holds the rest
        task = asyncio.create_task(self._run(msg, kind, work, started))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, msg: Msg, kind: str, work: Callable[[Msg, float], Awaitable[None]], started: float) -> None:
        try:
            if self._tracing.enabled:
                # Under the publisher's traceparent header when it sent one (NATS headers, as W3C says for HTTP).
                with self._tracing.span(f"nats {kind}", kind=CONSUMER, context=Tracing.extract(msg.headers or {}),
                                        attributes={"messaging.system": "nats",
                                                    "messaging.destination.name": msg.subject}):
                    await work(msg, started)
            else:
                await work(msg, started)
        except DomainError as exc:
            self._count(kind, exc.code)
            await self._reply(msg, _error(exc.code, exc.message, self.agent_id, exc.details))
        except Exception:
            log.exception("NATS message failed", extra={"kind": kind, "subject": msg.subject})
            self._count(kind, "internal")
            await self._reply(msg, _error("internal", "the message could not be handled", self.agent_id))
        finally:
            self._slots.release()

    async def _reply(self, msg: Msg, body: bytes) -> None:
        if msg.reply and self._nc is not None:
            try:
                await self._nc.publish(msg.reply, body)
            except Exception as exc:  # the connection went away: the requester times out and retries
                log.warning("NATS reply failed", extra={"error": repr(exc)[:300]})

    # ---- bids ----

    async def _on_bid(self, msg: Msg) -> None:
        if not msg.reply:
            self._count("bid", "no_reply")  # nobody to answer: not worth a bid
            return
        await self._dispatch(msg, "bid", BID_ROLES, self._bid)

    async def _bid(self, msg: Msg, started: float) -> None:
        answer = await self._gateway.answer(msg.data, "nats", started)
        outcome = answer.outcome
        if answer.invalid is not None or outcome is None:
            self._count("bid", "invalid_request")
            await self._reply(msg, _error("invalid_request", f"invalid OpenRTB request: {answer.invalid}",
                                          self.agent_id, {"reason": answer.invalid}))
            return
        if outcome.response is not None:
            self._count("bid", "bid")
            body = answer.body(ext=self._ext_bid)
        else:
            self._count("bid", "nobid")
            body = answer.body(ext={"agent_id": self.agent_id, "reason": outcome.reason})
        if body is not None:
            await self._reply(msg, body)

    # ---- ingest ----

    async def _on_ingest(self, msg: Msg) -> None:
        await self._dispatch(msg, "ingest", INGEST_ROLES, self._ingest_one)

    async def _ingest_one(self, msg: Msg, started: float) -> None:
        source = msg.subject.split(".", 2)[1]
        result = await self._ingest.ingest(_with_source(msg.data, source))
        self._count("ingest", "accepted" if not result.get("rejected") else "partly_rejected")
        await self._reply(msg, _encode(result))


def _redacted(url: str) -> str:
    """The URL without the credentials it may carry (nats://user:password@host)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _with_source(raw: bytes, source: str) -> bytes:
    """The events with the subject's source where they name none; one naming another source refuses them all."""
    if nesting_exceeds(raw):
        raise InvalidInput(f"JSON nests deeper than {MAX_DEPTH} levels")
    try:
        refuse_left_open(raw)
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None
    for n, item in enumerate(doc if isinstance(doc, list) else [doc]):
        if isinstance(item, dict):
            named = item.setdefault("source", source)
            if named != source:
                raise InvalidInput(f"event {n} names source {named!r} but came on ingest.{source}",
                                   {"index": n, "source": named})
    return _encode(doc)
