"""syncvalue.v1.SyncValueService: lifetime value from the in-process model (app/ltv)."""

from __future__ import annotations

from collections.abc import Callable

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from app.errors import InvalidInput, RateLimited
from app.ltv.service import INVALID_INPUT, Answer, Ask, Event, LtvService
from app.ratelimit import RateLimiter
from handlers.rpc import syncvalue_grpc
from handlers.rpc import syncvalue_pb2 as pb
from handlers.rpc.server import CALLER, MalformedMessage, each_message, recv_one


def ask_of(r: pb.LTVPredictionRequest, explain: bool = True) -> Ask:
    """The service's question for one request (InvalidInput names what is wrong)."""
    events = tuple(Event(e.timestamp_ms, e.event_type, e.event_value) for e in r.event_history) \
        if r.event_history else None
    return Ask(r.customer_id, r.platform, events, r.current_cac, r.horizon_days, r.request_id,
               explain and r.metadata.get("explain", "true") != "false")


def reply_of(a: Answer, make: Callable[..., pb.LTVPredictionResponse] = pb.LTVPredictionResponse
             ) -> pb.LTVPredictionResponse:
    """The response for an answer, made by `make`: the message's class, or a batch reply's `responses.add`, which
    builds it in place. The fields most answers leave empty are set only when they are not (a batch builds 1,000,
    and keyword arguments spelled out cost a third less than a dict unpacked: docs/performance.md)."""
    m = make(customer_id=a.customer_id, predicted_ltv=a.predicted_ltv, confidence=a.confidence,
             ltv_lower_bound=a.ltv_lower_bound, ltv_upper_bound=a.ltv_upper_bound, model_version=a.model_version,
             inference_time_us=a.inference_time_us, status=a.status, expected_purchases=a.expected_purchases,
             probability_alive=a.probability_alive, horizon_days=a.horizon_days, currency=a.currency)
    if a.request_id:
        m.request_id = a.request_id
    if a.message:
        m.message = a.message
    if a.ltv_to_cac:
        m.ltv_to_cac = a.ltv_to_cac
    if a.top_features:
        m.top_features.extend(pb.FeatureImportance(name=n, importance=i, value=v) for n, i, v in a.top_features)
    return m


def invalid(r: pb.LTVPredictionRequest, message: str) -> pb.LTVPredictionResponse:
    return pb.LTVPredictionResponse(request_id=r.request_id, customer_id=r.customer_id,
                                    status=INVALID_INPUT, message=message)


class SyncValueService(syncvalue_grpc.SyncValueServiceBase):
    ROLES = ("partner", "admin")

    def __init__(self, ltv: LtvService, limiter: RateLimiter | None = None) -> None:
        """`limiter`: the one every protocol checks; each message of PredictLTVStream spends a request's token
        (the call itself is checked once, as every call is, when it opens)."""
        self._ltv = ltv
        self._limiter = limiter

    async def _one(self, request: pb.LTVPredictionRequest, explain: bool = True) -> pb.LTVPredictionResponse:
        try:
            ask = ask_of(request, explain)
        except InvalidInput as exc:
            return invalid(request, exc.message)
        [answer] = await self._ltv.predict([ask])
        return reply_of(answer)

    async def PredictLTV(self, stream: Stream[pb.LTVPredictionRequest, pb.LTVPredictionResponse]) -> None:
        await stream.send_message(await self._one(await recv_one(stream)))

    async def PredictLTVBatch(self, stream: Stream[pb.LTVBatchRequest, pb.LTVBatchResponse]) -> None:
        request = await recv_one(stream)
        if len(request.requests) > self._ltv.max_batch:
            raise GRPCError(Status.INVALID_ARGUMENT, f"at most {self._ltv.max_batch} requests per batch")
        answers: list[Answer | str] = []  # an answer, or why the request was refused
        asks = []
        for r in request.requests:
            try:
                # A batch explains only the requests that ask for it (metadata explain=true): it is for scoring many.
                asks.append(ask_of(r, explain=r.metadata.get("explain") == "true"))
                answers.append("")
            except InvalidInput as exc:
                answers.append(exc.message)
        predicted = iter(await self._ltv.predict(asks))
        reply = pb.LTVBatchResponse()
        add = reply.responses.add
        for r, refused in zip(request.requests, answers, strict=True):
            if refused:
                add(request_id=r.request_id, customer_id=r.customer_id, status=INVALID_INPUT, message=refused)
            else:
                reply_of(next(predicted), add)
        await stream.send_message(reply)

    async def PredictLTVStream(self, stream: Stream[pb.LTVPredictionRequest, pb.LTVPredictionResponse]) -> None:
        limiter = self._limiter
        principal, ip = CALLER.get() if limiter is not None else (None, "")
        async for request in each_message(stream):
            if limiter is not None:
                try:
                    # Every message is a request, as on REST (even a broken one): else one stream would answer
                    # without limit on a key limited to a few a second. Refused in the stream, which goes on.
                    limiter.check(principal, ip)
                except RateLimited as exc:
                    refused = pb.LTVPredictionRequest() if isinstance(request, MalformedMessage) else request
                    await stream.send_message(invalid(refused, f"rate limited: {exc.message}"))
                    continue
            if isinstance(request, MalformedMessage):
                await stream.send_message(pb.LTVPredictionResponse(status=INVALID_INPUT, message=request.message or ""))
            else:
                await stream.send_message(await self._one(request))

    async def GetModelHealth(self, stream: Stream[pb.HealthRequest, pb.HealthResponse]) -> None:
        await recv_one(stream)
        await stream.send_message(pb.HealthResponse(**self._ltv.health()))
