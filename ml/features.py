"""The 256-dimension bidding feature layout. This module is the only owner of the layout.

[0, 64)    user interests (weights 0..1)
[64, 128)  segment one-hot
[128, 136) loyalty: tier (0 / 0.5 / 1), stars balance / 5000, tier progress, earn rate / 2,
           redeem recency 1/(1+days/30), birthday eligible, preferred channel code, lifetime stars / 50000
136        recency: 1/(1 + hours since last seen / 24)
137        frequency-cap utilisation (0..1)
138        device type (OpenRTB devicetype / 7)
139        offer position (0 first .. 1 last)
[140, 256) zero (reserved)
"""

from __future__ import annotations

import numpy as np

DIM = 256
INTERESTS = slice(0, 64)
SEGMENTS = slice(64, 128)
LOYALTY = slice(128, 136)
RECENCY, FREQ_UTIL, DEVICE_TYPE, OFFER_POSITION = 136, 137, 138, 139
# The only features that differ between the candidates of one request; everything else is the user block.
CANDIDATE_COLUMNS = [FREQ_UTIL, OFFER_POSITION]
N_INTERESTS = N_SEGMENTS = 64
N_LOYALTY = 8
WIDTHS = {"interests": N_INTERESTS, "loyalty": N_LOYALTY}  # a stored profile's vectors


def user_block(interests: np.ndarray | None, segments: list[int] | None, loyalty: np.ndarray | None,
               recency: float, device_type: int | None) -> np.ndarray:
    """The part of the vector shared by every candidate of one request."""
    # A vector shorter than its block (stored before the edge checked shapes) fills what it has:
    # one user's data never fails the request, its batch or its stream.
    row = np.zeros(DIM, dtype=np.float32)
    if interests is not None:
        weights = interests[:N_INTERESTS]
        row[INTERESTS.start:INTERESTS.start + len(weights)] = np.clip(weights, 0.0, 1.0)
    if segments:
        idx = [s for s in segments if 0 <= s < N_SEGMENTS]
        row[SEGMENTS.start + np.asarray(idx, dtype=np.int64)] = 1.0
    if loyalty is not None:
        values = loyalty[:N_LOYALTY]
        row[LOYALTY.start:LOYALTY.start + len(values)] = values
    row[RECENCY] = recency
    row[DEVICE_TYPE] = min(max(device_type or 0, 0), 7) / 7.0
    return row


def candidate_columns(freq_util: np.ndarray | None, positions: np.ndarray) -> np.ndarray:
    """The per-candidate features, (n, len(CANDIDATE_COLUMNS)), in CANDIDATE_COLUMNS order."""
    cand = np.zeros((len(positions), len(CANDIDATE_COLUMNS)), dtype=np.float32)
    if freq_util is not None:
        cand[:, 0] = freq_util
    cand[:, 1] = positions
    return cand


def candidate_matrix(user_row: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The full rows: the user block with each candidate's own columns set."""
    x = np.empty((len(cand), DIM), dtype=np.float32)
    x[:] = user_row
    x[:, CANDIDATE_COLUMNS] = cand
    return x


USED = OFFER_POSITION + 1  # columns [0, USED) carry information; the rest are reserved


def to_sparse(row: np.ndarray) -> tuple[list[int], list[float]]:
    """A feature row as its non-zero columns and their values, the form logged for training. Values go through
    float32 -> float -> float32 exactly, so the row rebuilt from them is the one the scorer saw, bit for bit."""
    used = row[:USED]
    idx = np.flatnonzero(used)
    return idx.tolist(), used[idx].tolist()
