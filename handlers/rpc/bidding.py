"""campaign.bidding.v1.BiddingService: ProcessBid, StreamBids, HealthCheck."""

from __future__ import annotations

import asyncio
import time

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from app.bidding.gateway import BidAnswer, BidGateway
from app.errors import RateLimited
from app.ratelimit import RateLimiter
from handlers.rpc import bidding_grpc, bidding_pb2
from handlers.rpc.server import CALLER, MalformedMessage, check_reply_size, each_message, recv_one


def framed(message) -> bytes:
    """A protobuf message as gRPC puts it on the wire: a 5-byte prefix (not compressed, length), then the bytes."""
    payload = message.SerializeToString()
    check_reply_size(len(payload))
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class ReplyWriter:
    """Sends a stream's replies as they become ready, all the ready ones in one HTTP/2 DATA frame.

    gRPC frames each message with a 5-byte prefix and lets a DATA frame carry several of
    them, so replies that finish together cost one h2 frame and one socket write instead
    of one each (grpclib's `send_message` writes every message on its own). Uses
    grpclib's stream internals; `requirements.txt` pins the version they are read from.
    """

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._ready = asyncio.Event()
        self._sent = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run())

    def put(self, message) -> None:
        self._pending.append(framed(message))
        self._ready.set()

    async def _run(self) -> None:
        await self._stream.send_initial_metadata()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            data, self._pending = b"".join(self._pending), []
            await self._stream._stream.send_data(data)
            self._sent.set()

    async def room(self, most: int) -> None:
        """Until fewer than `most` replies wait to be sent: a client that stops reading stops being read."""
        while len(self._pending) >= most and not self._task.done():
            self._sent.clear()
            await self._sent.wait()

    async def close(self) -> None:
        """Wait until every reply put so far is sent."""
        self._closing = True
        self._ready.set()
        await self._task

    def abandon(self) -> None:
        self._task.cancel()


class BiddingService(bidding_grpc.BiddingServiceBase):
    ROLES = ("exchange", "admin")

    def __init__(self, gateway: BidGateway, limiter: RateLimiter, agent_id: str, max_in_flight: int) -> None:
        self._gateway = gateway
        self._limiter = limiter
        self._agent_id = agent_id  # `{node_id}-grpc`: BidResponseProto.agent_id of every answer
        self._max_in_flight = max_in_flight

    def _timeout_ms(self, stream: Stream, message: bidding_pb2.BidRequestProto) -> int:
        timeout = message.timeout_ms if message.timeout_ms > 0 else 0
        if stream.deadline is not None:
            left = int(stream.deadline.time_remaining() * 1000)
            if left <= 0:
                raise GRPCError(Status.DEADLINE_EXCEEDED, "deadline passed before bidding started")
            timeout = min(timeout, left) if timeout else left
        return timeout

    def _reply(self, message: bidding_pb2.BidRequestProto, answer: BidAnswer) -> bidding_pb2.BidResponseProto:
        body = answer.body(nbr_body=True)
        return bidding_pb2.BidResponseProto(
            openrtb_json=body.decode() if body else "", request_id=message.request_id or answer.request_id,
            has_bid=bool(answer.outcome and answer.outcome.response), processing_time_us=answer.elapsed_us,
            agent_id=self._agent_id, error=f"invalid_request: {answer.invalid}" if answer.invalid else "")

    async def ProcessBid(self, stream: Stream[bidding_pb2.BidRequestProto, bidding_pb2.BidResponseProto]) -> None:
        started = time.perf_counter()
        message = await recv_one(stream)
        answer = await self._gateway.answer(message.openrtb_json, "grpc", started,
                                            self._timeout_ms(stream, message), message.user_id)
        if answer.invalid is not None:
            raise GRPCError(Status.INVALID_ARGUMENT, f"invalid OpenRTB request: {answer.invalid}")
        if answer.outcome is not None and answer.outcome.reason == "overloaded":
            raise GRPCError(Status.RESOURCE_EXHAUSTED, "bidder is overloaded; retry later")
        await stream.send_message(self._reply(message, answer))

    async def StreamBids(self, stream: Stream[bidding_pb2.BidRequestProto, bidding_pb2.BidResponseProto]) -> None:
        principal, ip = CALLER.get()
        slots = asyncio.Semaphore(self._max_in_flight)
        replies = ReplyWriter(stream)
        tasks: set[asyncio.Task] = set()

        async def one(message: bidding_pb2.BidRequestProto, started: float) -> None:
            try:
                answer = await self._gateway.answer(message.openrtb_json, "grpc_stream", started,
                                                    message.timeout_ms, message.user_id)
                reply = self._reply(message, answer)
                if answer.outcome is not None and answer.outcome.reason == "overloaded":
                    reply.error = "resource_exhausted"
                replies.put(reply)
            finally:
                slots.release()

        try:
            async for message in each_message(stream):
                # Replies the client has not read hold back reading, as the in-flight bids do (below).
                await replies.room(self._max_in_flight)
                malformed = isinstance(message, MalformedMessage)
                try:
                    self._limiter.check(principal, ip)  # every message is a request, as on REST, even a broken one
                except RateLimited as exc:
                    replies.put(bidding_pb2.BidResponseProto(request_id="" if malformed else message.request_id,
                                                             agent_id=self._agent_id,
                                                             error=f"rate_limited: {exc.message}"))
                    continue
                if malformed:  # answered, and the stream goes on
                    replies.put(bidding_pb2.BidResponseProto(agent_id=self._agent_id,
                                                             error=f"invalid_argument: {message.message}"))
                    continue
                await slots.acquire()  # bounded in-flight work per stream: backpressure on the client
                task = asyncio.create_task(one(message, time.perf_counter()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
        except GRPCError:
            # The request side cannot go on (a message over the size limit): the bids already placed are answered
            # before the stream ends with the error's status.
            await asyncio.gather(*tasks, return_exceptions=True)
            await replies.close()
            raise
        except BaseException:
            replies.abandon()
            raise
        await replies.close()

    async def HealthCheck(self, stream: Stream[bidding_pb2.HealthCheckRequest, bidding_pb2.HealthCheckResponse]
                          ) -> None:
        await recv_one(stream)
        bidder = self._gateway.bidder
        await stream.send_message(bidding_pb2.HealthCheckResponse(
            serving=True, model_version=bidder.batcher._model().version, provider=bidder.batcher.provider.name))
