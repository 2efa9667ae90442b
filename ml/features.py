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
N_INTERESTS = N_SEGMENTS = 64
N_LOYALTY = 8


def user_block(interests: np.ndarray | None, segments: list[int] | None, loyalty: np.ndarray | None,
               recency: float, device_type: int | None) -> np.ndarray:
    """The part of the vector shared by every candidate of one request."""
    row = np.zeros(DIM, dtype=np.float32)
    if interests is not None:
        row[INTERESTS] = np.clip(interests[:N_INTERESTS], 0.0, 1.0)
    if segments:
        idx = [s for s in segments if 0 <= s < N_SEGMENTS]
        row[SEGMENTS.start + np.asarray(idx, dtype=np.int64)] = 1.0
    if loyalty is not None:
        row[LOYALTY] = loyalty[:N_LOYALTY]
    row[RECENCY] = recency
    row[DEVICE_TYPE] = min(max(device_type or 0, 0), 7) / 7.0
    return row


def candidate_matrix(user_row: np.ndarray, freq_util: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """One row per candidate: the user block plus per-candidate features."""
    n = len(freq_util)
    x = np.broadcast_to(user_row, (n, DIM)).copy()
    x[:, FREQ_UTIL] = freq_util
    x[:, OFFER_POSITION] = positions
    return x
