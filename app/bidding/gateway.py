"""One entry for every protocol: decode, validate, process, count. REST, gRPC, websockets and NATS call this."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

import msgspec

from app.bidding.openrtb import BidResponse, InvalidBidRequest, User, decode_request, encode_response
from app.bidding.processor import BidProcessor, Outcome
from app.jsondepth import MAX_DEPTH, nesting_exceeds, refuse_left_open
from app.runtime.metrics import Metrics

log = logging.getLogger("contrail.bidding")


def agent_id(node_id: str, protocol: str) -> str:
    """Who answered, as every protocol's answers name it: `{node_id}-{protocol}` (`server.node_id`, the host name
    when empty), so an exchange, or a test, can tell the nodes and entry points of a deployment apart."""
    return f"{node_id or socket.gethostname()}-{protocol}"


def with_ext(body: bytes, ext: dict) -> bytes:
    """An encoded BidResponse (a JSON object with no `ext`: the struct has none) with OpenRTB's `ext` added."""
    return body[:-1] + b',"ext":' + msgspec.json.encode(ext) + b"}"


@dataclass
class BidAnswer:
    outcome: Outcome | None
    invalid: str | None
    request_id: str
    elapsed_us: int

    def body(self, nbr_body: bool = True, ext: dict | None = None) -> bytes | None:
        """The OpenRTB JSON to send: the response, a no-bid with nbr, or None when invalid; with `ext` (e.g.
        the agent_id) as the response's OpenRTB `ext` object."""
        if self.outcome is None:
            return None
        if self.outcome.response is not None:
            body = encode_response(self.outcome.response)
        elif nbr_body:
            body = encode_response(BidResponse(id=self.request_id, nbr=self.outcome.nbr))
        else:
            return None
        return body if ext is None else with_ext(body, ext)


class BidGateway:
    def __init__(self, bidder: BidProcessor, metrics: Metrics) -> None:
        self.bidder = bidder
        self._metrics = metrics
        self._counted: dict[tuple[str, bool], tuple] = {}  # labelled metric children, looked up once

    def _count(self, protocol: str, bid: bool):
        children = self._counted.get((protocol, bid))
        if children is None:
            m = self._metrics
            children = self._counted[(protocol, bid)] = (
                m.bid_requests.labels(protocol, "bid" if bid else "nobid"), m.bid_latency.labels(protocol))
        return children

    async def answer(self, raw: bytes | str, protocol: str, started: float | None = None,
                     timeout_ms: int = 0, user_id: str = "") -> BidAnswer:
        started = time.perf_counter() if started is None else started
        m = self._metrics
        try:
            if nesting_exceeds(raw):
                raise InvalidBidRequest("too_deeply_nested", f"JSON nests deeper than {MAX_DEPTH} levels")
            request = decode_request(raw)
        except InvalidBidRequest as exc:
            m.bid_invalid.labels(exc.reason).inc()
            m.bid_requests.labels(protocol, "invalid").inc()
            log.info("invalid bid request", extra={"reason": exc.reason, "detail": str(exc)[:200],
                                                   "protocol": protocol})
            return BidAnswer(None, exc.reason, "" if exc.reason == "too_deeply_nested" else _id_of(raw),
                             int((time.perf_counter() - started) * 1e6))
        if timeout_ms > 0:
            request = msgspec.structs.replace(request, tmax=timeout_ms)
        if user_id:
            user = request.user
            request = msgspec.structs.replace(
                request, user=msgspec.structs.replace(user, id=user_id) if user else User(id=user_id))
        try:
            outcome = await self.bidder.process(request, started)
        except Exception:
            # A fault in one request (its data, a bug) is a counted no-bid for that request alone: the
            # exchange gets an answer and the stream or batch it came in goes on.
            log.exception("bid request failed", extra={"request_id": request.id, "protocol": protocol})
            outcome = self.bidder.failed(request)
        requests, latency = self._count(protocol, outcome.response is not None)
        requests.inc()
        if outcome.response is None:
            m.bid_nobids.labels(outcome.reason).inc()
        elapsed = time.perf_counter() - started
        latency.observe(elapsed)
        return BidAnswer(outcome, None, request.id or "", int(elapsed * 1e6))


class _IdOnly(msgspec.Struct):
    id: str = ""


def _id_of(raw: bytes | str) -> str:
    """An invalid request's id when it has one, so that a stream's client can tell which request was refused."""
    try:
        refuse_left_open(raw)
        found = msgspec.json.decode(raw, type=_IdOnly).id
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError is a DecodeError
        return ""
    return found[:128]
