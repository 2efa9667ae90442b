"""A recommendation model version as lists are scored with it: its item embeddings placed on the catalogue's items
and its blend weights. The live version is held by the features and the service; a canary version (docs/learning.md,
"Canaries") is one of these beside it, for the users its split takes."""

from __future__ import annotations

import dataclasses

import numpy as np

from ml.reco import strategies as st
from ml.reco.embeddings import Embeddings
from ml.reco.signals import normalize_rows
from state.reco import SavedModel


def place(saved: SavedModel, index: dict[str, int], n_items: int) -> Embeddings:
    """A stored model's item embeddings placed by item id (items it never knew get zeros)."""
    stored = np.frombuffer(saved.item_factors, dtype=np.float32).reshape(len(saved.item_ids), saved.factors)
    factors = np.zeros((n_items, saved.factors), dtype=np.float32)
    for row, item_id in enumerate(saved.item_ids):
        i = index.get(item_id)
        if i is not None:
            factors[i] = stored[row]
    return Embeddings(saved.kind, np.zeros((0, saved.factors), np.float32), factors, normalize_rows(factors))


def label(version: str, learned: bool) -> str:
    """The `model` a personalized list names: the version and whether its weights are learned."""
    return f"{version}:{'learned' if learned else 'seed'}" if version else "seed"


class Variant:
    """A version other than the live one (None: the seed, features only), ready to score lists."""

    def __init__(self, saved: SavedModel | None, index: dict[str, int], n_items: int) -> None:
        self.version = saved.version if saved is not None else ""
        self.embeddings = place(saved, index, n_items) if saved is not None else None
        self.weights: tuple[float, ...] = tuple(saved.weights) if saved is not None else st.SEED_WEIGHTS
        self.name = label(self.version, saved.learned if saved is not None else False)
        self._base: st.RecoModel | None = None
        self._model: st.RecoModel | None = None

    def model(self, base: st.RecoModel) -> st.RecoModel:
        """The features' snapshot with this version's embeddings (kept until the snapshot changes)."""
        if self._base is not base or self._model is None:
            emb = self.embeddings
            if emb is not None and emb.item_factors.shape[0] < base.n_items:  # items added since it started
                pad = np.zeros((base.n_items - emb.item_factors.shape[0], emb.item_factors.shape[1]), np.float32)
                emb = self.embeddings = Embeddings(emb.kind, emb.user_factors, np.vstack([emb.item_factors, pad]),
                                                   np.vstack([emb.unit, pad]))
            self._model = dataclasses.replace(base, embeddings=emb, version=self.version)
            self._base = base
        return self._model
