from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BidRequestProto(_message.Message):
    __slots__ = ("openrtb_json", "request_id", "user_id", "timeout_ms")
    OPENRTB_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    openrtb_json: str
    request_id: str
    user_id: str
    timeout_ms: int
    def __init__(self, openrtb_json: _Optional[str] = ..., request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class BidResponseProto(_message.Message):
    __slots__ = ("openrtb_json", "request_id", "has_bid", "processing_time_us", "agent_id", "error")
    OPENRTB_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_BID_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_TIME_US_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    openrtb_json: str
    request_id: str
    has_bid: bool
    processing_time_us: int
    agent_id: str
    error: str
    def __init__(self, openrtb_json: _Optional[str] = ..., request_id: _Optional[str] = ..., has_bid: _Optional[bool] = ..., processing_time_us: _Optional[int] = ..., agent_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("serving", "model_version", "provider")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    model_version: str
    provider: str
    def __init__(self, serving: _Optional[bool] = ..., model_version: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...
