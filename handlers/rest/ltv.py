"""Lifetime value over REST: the SyncValue service's twin (a customer's value, predictions for any history), the
model's health and an on-demand refit."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from app.errors import Forbidden, InvalidInput
from app.ltv.service import EARLIEST_EVENT_MS, MAX_HORIZON_DAYS, Ask, Event, LtvService, event_time_error
from handlers.rest.common import endpoint, json_response

Horizon = Annotated[int, msgspec.Meta(ge=0, le=MAX_HORIZON_DAYS)]


class LtvQuery(msgspec.Struct, forbid_unknown_fields=True):
    horizon_days: Horizon = 0  # 0: ltv.horizon_days


class CustomerEventBody(msgspec.Struct, forbid_unknown_fields=True):
    timestamp_ms: Annotated[int, msgspec.Meta(gt=0)]
    event_type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    event_value: Annotated[float, msgspec.Meta(ge=0, le=1e9)] = 0.0


class PredictBody(msgspec.Struct, forbid_unknown_fields=True):
    """The JSON twin of syncvalue.v1.LTVPredictionRequest."""
    customer_id: Annotated[str, msgspec.Meta(max_length=256)] = ""
    request_id: Annotated[str, msgspec.Meta(max_length=256)] = ""
    platform: Annotated[str, msgspec.Meta(max_length=64)] = ""
    event_history: Annotated[list[CustomerEventBody], msgspec.Meta(max_length=100_000)] = []
    current_cac: Annotated[float, msgspec.Meta(ge=0, le=1e9)] = 0.0
    features: Annotated[list[float], msgspec.Meta(max_length=1000)] = []
    metadata: Annotated[dict[str, str], msgspec.Meta(max_length=100)] = {}
    horizon_days: Horizon = 0


class FeatureImportance(msgspec.Struct):
    name: str
    importance: float
    value: float


class Prediction(msgspec.Struct):
    """The JSON twin of syncvalue.v1.LTVPredictionResponse (status by name)."""
    request_id: str
    customer_id: str
    status: str
    predicted_ltv: float
    confidence: float
    ltv_lower_bound: float
    ltv_upper_bound: float
    expected_purchases: float
    probability_alive: float
    horizon_days: int
    currency: str
    model_version: str
    ltv_to_cac: float
    message: str
    inference_time_us: int
    top_features: list[FeatureImportance]


class Health(msgspec.Struct):
    is_healthy: bool
    model_version: str
    uptime_seconds: int
    current_accuracy: float
    target_accuracy: float
    predictions_today: int
    avg_latency_us: float
    p95_latency_us: float
    p99_latency_us: float
    holdout_mae: float
    holdout_rmse: float
    holdout_customers: int
    trained_at_ms: int


class DistributionQuery(msgspec.Struct, forbid_unknown_fields=True):
    horizon_days: Horizon = 0


class Bin(msgspec.Struct):
    lower: float
    upper: float | None  # None: the last bin, open above (values past the 99th percentile)
    customers: int


class TopCustomer(msgspec.Struct):
    customer_id: str
    predicted_ltv: float
    ltv_lower_bound: float
    ltv_upper_bound: float
    probability_alive: float


class Distribution(msgspec.Struct):
    model_version: str
    horizon_days: int
    currency: str
    customers: int
    total: float
    mean: float
    quantiles: dict[str, float]
    bins: list[Bin]
    top: list[TopCustomer]


class Refit(msgspec.Struct):
    live: bool
    reason: str
    model: str             # the version serving after the refit
    customers: int
    seconds: float
    evaluation: dict[str, float] = {}
    status: str = ""       # live, canary (out to canary.share of customers), recorded, kept_out
    candidate: str = ""    # the version fitted, when one was


class LtvApi:
    """A customer's lifetime value, predictions for any history, the model's health and refits."""

    def __init__(self, ltv: LtvService) -> None:
        self._ltv = ltv

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/customers/{customer_id}/ltv", self.customer)
        router.add_post("/v1/ltv/predict", self.predict)
        router.add_get("/v1/admin/ltv/model", self.health)
        router.add_get("/v1/admin/ltv/distribution", self.distribution)
        router.add_post("/v1/admin/ltv/refit", self.refit)

    @endpoint("A customer's predicted lifetime value over the horizon from their own purchases (orders, loyalty "
              "and ingested purchases), with an 80% interval, P(alive), expected purchases and the features behind "
              "it: a customer's own, or anyone's for a partner (as POST /v1/ltv/predict) or an admin",
              tags=("ltv",), roles=("customer", "partner", "admin"), query=LtvQuery, response=Prediction,
              errors=(403, 404))
    async def customer(self, request: web.Request, principal, query: LtvQuery) -> web.Response:
        customer_id = request.match_info["customer_id"]
        # Partners value any customer for bidding (POST /v1/ltv/predict, gRPC SyncValue): the same value here.
        if principal.role == "customer" and principal.id != customer_id:
            raise Forbidden("customers can only see their own lifetime value")
        answer = await self._ltv.customer(customer_id, query.horizon_days)
        return json_response(answer.as_dict())

    @endpoint("Predict a lifetime value from a given history (or, without one, from the customer's own "
              "purchases); a history that cannot be used answers status INVALID_INPUT with why",
              tags=("ltv",), roles=("partner", "admin"), body=PredictBody, response=Prediction)
    async def predict(self, request: web.Request, principal, body: PredictBody) -> web.Response:
        for i, e in enumerate(body.event_history):
            if e.timestamp_ms < EARLIEST_EVENT_MS:  # a range, like the schema's: 400 naming the field
                raise InvalidInput(event_time_error(i, e.timestamp_ms),
                                   {"field": f"event_history[{i}].timestamp_ms"})
        events = tuple(Event(e.timestamp_ms, e.event_type, e.event_value) for e in body.event_history) \
            if body.event_history else None
        [answer] = await self._ltv.predict([Ask(body.customer_id, body.platform, events, body.current_cac,
                                                body.horizon_days, body.request_id,
                                                body.metadata.get("explain", "true") != "false")])
        return json_response(answer.as_dict())

    @endpoint("The lifetime-value model serving now: its version, holdout accuracy and errors, latency",
              tags=("ltv",), roles=("admin",), response=Health)
    async def health(self, request: web.Request, principal) -> web.Response:
        return json_response(self._ltv.health())

    @endpoint("Every customer's predicted value now: quantiles, a histogram and the most valuable customers (computed "
              "for the serving model and horizon, reused for 10 minutes)", tags=("ltv",), roles=("admin",),
              query=DistributionQuery, response=Distribution, errors=(404,))
    async def distribution(self, request: web.Request, principal, query: DistributionQuery) -> web.Response:
        return json_response(await self._ltv.distribution(query.horizon_days))

    @endpoint("Refit now from every purchase, evaluating on the time holdout first; answers whether it went live "
              "(or out as a canary, with canary.on_retrain)",
              tags=("ltv",), roles=("admin",), response=Refit)
    async def refit(self, request: web.Request, principal) -> web.Response:
        outcome = await self._ltv.refit(principal)
        return json_response({k: outcome.get(k, d) for k, d in (("live", False), ("reason", ""), ("model", ""),
                                                                  ("customers", 0), ("seconds", 0.0),
                                                                  ("evaluation", {}), ("status", ""),
                                                                  ("candidate", ""))})
