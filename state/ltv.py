"""Lifetime value's records: the purchases a customer's value is learned from, and the fitted models."""

from __future__ import annotations

import msgspec


class Purchase(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One purchase a customer earned stars for (an order, an ingested or a point-of-sale purchase), not reversed."""

    customer_id: str
    at: float            # epoch seconds
    amount_cents: int
    channel: str


class SavedLtvModel(msgspec.Struct, frozen=True):
    """A fitted model that went live, as stored: restored at start so a restart serves what served before."""

    sequence: int        # 1, 2, ...: the version is "{kind}-{sequence}"
    kind: str
    trained_at: float
    body: bytes          # the model's own serialisation (ml/ltv LTVModel.to_bytes)
    evaluation: dict[str, float] = {}
    customers: int = 0
    purchases: int = 0

    @property
    def version(self) -> str:
        return f"{self.kind}-{self.sequence}"


_model_pack = msgspec.msgpack.Decoder(SavedLtvModel)


def encode_model(model: SavedLtvModel) -> bytes:
    return msgspec.msgpack.encode(model)


def decode_model(body: bytes) -> SavedLtvModel:
    return _model_pack.decode(body)
