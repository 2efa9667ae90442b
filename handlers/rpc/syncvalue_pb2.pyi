from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREDICTION_STATUS_UNSPECIFIED: _ClassVar[PredictionStatus]
    SUCCESS: _ClassVar[PredictionStatus]
    FALLBACK: _ClassVar[PredictionStatus]
    INVALID_INPUT: _ClassVar[PredictionStatus]
    NO_HISTORY: _ClassVar[PredictionStatus]
    MODEL_NOT_READY: _ClassVar[PredictionStatus]
PREDICTION_STATUS_UNSPECIFIED: PredictionStatus
SUCCESS: PredictionStatus
FALLBACK: PredictionStatus
INVALID_INPUT: PredictionStatus
NO_HISTORY: PredictionStatus
MODEL_NOT_READY: PredictionStatus

class CustomerEvent(_message.Message):
    __slots__ = ("timestamp_ms", "event_type", "event_value")
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_VALUE_FIELD_NUMBER: _ClassVar[int]
    timestamp_ms: int
    event_type: str
    event_value: float
    def __init__(self, timestamp_ms: _Optional[int] = ..., event_type: _Optional[str] = ..., event_value: _Optional[float] = ...) -> None: ...

class LTVPredictionRequest(_message.Message):
    __slots__ = ("request_id", "customer_id", "platform", "event_history", "current_cac", "features", "metadata", "horizon_days")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    EVENT_HISTORY_FIELD_NUMBER: _ClassVar[int]
    CURRENT_CAC_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    customer_id: str
    platform: str
    event_history: _containers.RepeatedCompositeFieldContainer[CustomerEvent]
    current_cac: float
    features: _containers.RepeatedScalarFieldContainer[float]
    metadata: _containers.ScalarMap[str, str]
    horizon_days: int
    def __init__(self, request_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., platform: _Optional[str] = ..., event_history: _Optional[_Iterable[_Union[CustomerEvent, _Mapping]]] = ..., current_cac: _Optional[float] = ..., features: _Optional[_Iterable[float]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., horizon_days: _Optional[int] = ...) -> None: ...

class FeatureImportance(_message.Message):
    __slots__ = ("name", "importance", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    importance: float
    value: float
    def __init__(self, name: _Optional[str] = ..., importance: _Optional[float] = ..., value: _Optional[float] = ...) -> None: ...

class LTVPredictionResponse(_message.Message):
    __slots__ = ("request_id", "customer_id", "predicted_ltv", "confidence", "ltv_lower_bound", "ltv_upper_bound", "model_version", "top_features", "inference_time_us", "status", "message", "expected_purchases", "probability_alive", "horizon_days", "currency", "ltv_to_cac")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LTV_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LTV_LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    LTV_UPPER_BOUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOP_FEATURES_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PURCHASES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_ALIVE_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LTV_TO_CAC_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    customer_id: str
    predicted_ltv: float
    confidence: float
    ltv_lower_bound: float
    ltv_upper_bound: float
    model_version: str
    top_features: _containers.RepeatedCompositeFieldContainer[FeatureImportance]
    inference_time_us: int
    status: PredictionStatus
    message: str
    expected_purchases: float
    probability_alive: float
    horizon_days: int
    currency: str
    ltv_to_cac: float
    def __init__(self, request_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., predicted_ltv: _Optional[float] = ..., confidence: _Optional[float] = ..., ltv_lower_bound: _Optional[float] = ..., ltv_upper_bound: _Optional[float] = ..., model_version: _Optional[str] = ..., top_features: _Optional[_Iterable[_Union[FeatureImportance, _Mapping]]] = ..., inference_time_us: _Optional[int] = ..., status: _Optional[_Union[PredictionStatus, str]] = ..., message: _Optional[str] = ..., expected_purchases: _Optional[float] = ..., probability_alive: _Optional[float] = ..., horizon_days: _Optional[int] = ..., currency: _Optional[str] = ..., ltv_to_cac: _Optional[float] = ...) -> None: ...

class LTVBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[LTVPredictionRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[LTVPredictionRequest, _Mapping]]] = ...) -> None: ...

class LTVBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[LTVPredictionResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[LTVPredictionResponse, _Mapping]]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("is_healthy", "model_version", "uptime_seconds", "current_accuracy", "target_accuracy", "predictions_today", "avg_latency_us", "p95_latency_us", "p99_latency_us", "holdout_mae", "holdout_rmse", "holdout_customers", "trained_at_ms")
    IS_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TARGET_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_TODAY_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    P99_LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_MAE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_RMSE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_AT_MS_FIELD_NUMBER: _ClassVar[int]
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
    def __init__(self, is_healthy: _Optional[bool] = ..., model_version: _Optional[str] = ..., uptime_seconds: _Optional[int] = ..., current_accuracy: _Optional[float] = ..., target_accuracy: _Optional[float] = ..., predictions_today: _Optional[int] = ..., avg_latency_us: _Optional[float] = ..., p95_latency_us: _Optional[float] = ..., p99_latency_us: _Optional[float] = ..., holdout_mae: _Optional[float] = ..., holdout_rmse: _Optional[float] = ..., holdout_customers: _Optional[int] = ..., trained_at_ms: _Optional[int] = ...) -> None: ...
