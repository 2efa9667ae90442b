from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserContext(_message.Message):
    __slots__ = ("user_id", "is_guest", "session_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    IS_GUEST_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    is_guest: bool
    session_id: str
    def __init__(self, user_id: _Optional[str] = ..., is_guest: _Optional[bool] = ..., session_id: _Optional[str] = ...) -> None: ...

class SearchContext(_message.Message):
    __slots__ = ("origin", "destination", "departure_date", "passengers", "cabin_class", "user_segment")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    DEPARTURE_DATE_FIELD_NUMBER: _ClassVar[int]
    PASSENGERS_FIELD_NUMBER: _ClassVar[int]
    CABIN_CLASS_FIELD_NUMBER: _ClassVar[int]
    USER_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    origin: str
    destination: str
    departure_date: str
    passengers: int
    cabin_class: str
    user_segment: str
    def __init__(self, origin: _Optional[str] = ..., destination: _Optional[str] = ..., departure_date: _Optional[str] = ..., passengers: _Optional[int] = ..., cabin_class: _Optional[str] = ..., user_segment: _Optional[str] = ...) -> None: ...

class OfferFeatures(_message.Message):
    __slots__ = ("offer_id", "total_price_nuc", "product_codes", "discount_percentage")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PRICE_NUC_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_CODES_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    total_price_nuc: float
    product_codes: _containers.RepeatedScalarFieldContainer[str]
    discount_percentage: float
    def __init__(self, offer_id: _Optional[str] = ..., total_price_nuc: _Optional[float] = ..., product_codes: _Optional[_Iterable[str]] = ..., discount_percentage: _Optional[float] = ...) -> None: ...

class PredictConversionRequest(_message.Message):
    __slots__ = ("user_context", "search_context", "offer_features")
    USER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEARCH_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    OFFER_FEATURES_FIELD_NUMBER: _ClassVar[int]
    user_context: UserContext
    search_context: SearchContext
    offer_features: OfferFeatures
    def __init__(self, user_context: _Optional[_Union[UserContext, _Mapping]] = ..., search_context: _Optional[_Union[SearchContext, _Mapping]] = ..., offer_features: _Optional[_Union[OfferFeatures, _Mapping]] = ...) -> None: ...

class PredictConversionResponse(_message.Message):
    __slots__ = ("probability", "model_version")
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    probability: float
    model_version: str
    def __init__(self, probability: _Optional[float] = ..., model_version: _Optional[str] = ...) -> None: ...

class RankOffersRequest(_message.Message):
    __slots__ = ("user_context", "search_context", "offers")
    USER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEARCH_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    user_context: UserContext
    search_context: SearchContext
    offers: _containers.RepeatedCompositeFieldContainer[OfferFeatures]
    def __init__(self, user_context: _Optional[_Union[UserContext, _Mapping]] = ..., search_context: _Optional[_Union[SearchContext, _Mapping]] = ..., offers: _Optional[_Iterable[_Union[OfferFeatures, _Mapping]]] = ...) -> None: ...

class RankedOffer(_message.Message):
    __slots__ = ("offer_id", "probability", "rank")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    probability: float
    rank: int
    def __init__(self, offer_id: _Optional[str] = ..., probability: _Optional[float] = ..., rank: _Optional[int] = ...) -> None: ...

class RankOffersResponse(_message.Message):
    __slots__ = ("offers", "model_version")
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[RankedOffer]
    model_version: str
    def __init__(self, offers: _Optional[_Iterable[_Union[RankedOffer, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...
