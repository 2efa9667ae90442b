"""Recommendation entities: the items that can be recommended and the interactions they are learned from."""

from __future__ import annotations

from typing import Annotated

import msgspec

from state.text import whole

# An item's id is a path segment (/v1/reco/items/{item_id}) and is shown in lists and logs: no spaces, no slashes and
# no control characters (C0, DEL and C1; a NUL or an escape sequence in an id is never what was meant).
ITEM_ID_PATTERN = whole(r"[^\s/\x00-\x1f\x7f-\x9f]+")
ITEM_ID_RULE = "with no spaces, slashes or control characters"  # the pattern in words, as "Expected `str` ..." ends
ItemId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ITEM_ID_PATTERN)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class RecoItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Something a customer can be shown: a destination, an ancillary, an offer."""

    item_id: ItemId
    category: Token | None = None
    tags: Annotated[list[Token], msgspec.Meta(max_length=50)] = []
    features: Annotated[dict[Token, float], msgspec.Meta(max_length=50)] = {}
    created_at: Annotated[float, msgspec.Meta(ge=0, le=1e11)] | None = None  # epoch seconds, as ingest's `at`
    hidden: bool = False


class Interaction(msgspec.Struct, frozen=True, array_like=True):
    """One feedback event: who, which item, what kind, its weight and its event time (epoch s)."""

    user_id: str
    item_id: str
    kind: str
    weight: float
    at: float


class SavedModel(msgspec.Struct, frozen=True):
    """A recommendation model that went live, as stored: its item embeddings by item id and its blend weights."""

    sequence: int  # 1, 2, ...: the version is "{kind}-{sequence}"
    kind: str
    trained_at: float
    item_ids: list[str]
    item_factors: bytes  # (len(item_ids), factors) float32, C order
    factors: int
    weights: list[float]
    learned: bool
    evaluation: dict[str, float] | None = None
    data_through: float | None = None  # the time of the newest event it was trained on (None: stored before this)

    @property
    def version(self) -> str:
        return f"{self.kind}-{self.sequence}"


class _StoredItem(msgspec.Struct):
    """An item as stored: read without RecoItem's input limits, so that a row stored before a limit was tightened
    (an id with a trailing newline, a created_at in milliseconds) still loads instead of stopping the start."""

    item_id: str
    category: str | None = None
    tags: list[str] = []
    features: dict[str, float] = {}
    created_at: float | None = None
    hidden: bool = False


_item_json = msgspec.json.Decoder(_StoredItem)
_model_pack = msgspec.msgpack.Decoder(SavedModel)
_encoder = msgspec.json.Encoder()


def encode_item(item: RecoItem) -> str:
    return _encoder.encode(item).decode()


def decode_item(body: str | bytes) -> RecoItem:
    stored = _item_json.decode(body)
    return RecoItem(stored.item_id, stored.category, stored.tags, stored.features, stored.created_at, stored.hidden)


def encode_model(model: SavedModel) -> bytes:
    return msgspec.msgpack.encode(model)


def decode_model(body: bytes) -> SavedModel:
    return _model_pack.decode(body)
