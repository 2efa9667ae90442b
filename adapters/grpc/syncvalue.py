"""The client bids read lifetime values through when `ltv.remote` names another syncvalue.v1.SyncValueService
(see app/ltv/values.py for the cache, the breaker and the fallback)."""

from __future__ import annotations

import math
from ssl import SSLContext

from grpclib.client import Channel

from adapters.grpc.deadline import deadline_is_timeout
from app.runtime.tracing import outbound
from handlers.rpc import syncvalue_grpc
from handlers.rpc import syncvalue_pb2 as pb

VALUED = frozenset({pb.SUCCESS})  # answers that carry the customer's value (NO_HISTORY's is a new customer's prior)


_PREDICT = "syncvalue.v1.SyncValueService/PredictLTVBatch"
_ATTRIBUTES = {"rpc.system": "grpc", "rpc.service": "syncvalue.v1.SyncValueService", "rpc.method": "PredictLTVBatch"}


class RemoteSyncValue:
    """Calls a remote SyncValueService.PredictLTVBatch for many customers of one platform at a time."""

    def __init__(self, address: str, api_key: str = "", ssl: SSLContext | None = None) -> None:
        host, _, port = address.rpartition(":")
        self._channel = Channel(host, int(port), ssl=ssl)  # ssl: verified TLS (adapters.tls.grpc_client_ssl)
        self._stub = syncvalue_grpc.SyncValueServiceStub(self._channel)
        self._metadata = {"x-api-key": api_key} if api_key else {}

    async def predict_many(self, customer_ids: list[str], platform: str, timeout: float
                           ) -> dict[str, float | None]:
        """Each valued customer's predicted LTV, None for one with no purchase known (NO_HISTORY: no value to bid
        with); customers the remote could not value (FALLBACK, INVALID_INPUT, MODEL_NOT_READY) are left out. Raises
        on transport errors and on answers that do not match the asks."""
        request = pb.LTVBatchRequest(requests=[pb.LTVPredictionRequest(request_id=str(k), customer_id=c,
                                                                        platform=platform)
                                               for k, c in enumerate(customer_ids)])
        with deadline_is_timeout("remote SyncValue", timeout), outbound(_PREDICT, _ATTRIBUTES) as carried:
            reply = await self._stub.PredictLTVBatch(
                request, timeout=timeout, metadata={**self._metadata, **carried} or None)
        if len(reply.responses) != len(customer_ids):
            raise ValueError(f"remote SyncValue answered {len(reply.responses)} of {len(customer_ids)} customers")
        out: dict[str, float | None] = {}
        for asked, answer in zip(customer_ids, reply.responses, strict=True):
            if answer.customer_id != asked:
                raise ValueError("remote SyncValue answered out of order")
            if answer.status == pb.NO_HISTORY:
                out[asked] = None
                continue
            if answer.status not in VALUED:
                continue
            if not math.isfinite(answer.predicted_ltv):
                raise ValueError(f"remote SyncValue answered a non-finite value for {asked!r}")
            out[asked] = answer.predicted_ltv
        return out

    def close(self) -> None:
        self._channel.close()
