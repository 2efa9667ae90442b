"""The feature rows of recent bids, kept until their win notice logs them for training.

A model is trained on the rows it scored, not on rows rebuilt later from profiles that have since changed. Each
bid's row goes into a fixed ring of `slots` rows (a preallocated float32 array: a slot per bid sequence number,
written round); a win notice takes its row out and logs it with the win. A win whose row was overwritten (it
came more than `slots` bids later) is logged without one and counted.
"""

from __future__ import annotations

import numpy as np

from ml import features


class FeatureTap:
    name = "bid_features"  # exported with the caches: entries, capacity, evictions (wins whose row was gone)

    def __init__(self, slots: int) -> None:
        self._slots = self.capacity = slots
        # Written through once at start: a calloc'd array would take its page faults on the bid path as bids first
        # fill it (5.9 µs a bid until the ring wrapped, against 1.2 µs after), and a restart would not come back
        # to the memory the live process had.
        self._rows = np.empty((slots, features.USED), dtype=np.float32) if slots else None
        if self._rows is not None:
            self._rows.fill(0.0)
        self._seq = np.full(slots, -1, dtype=np.int64)
        self.kept = self.evictions = 0

    def __len__(self) -> int:
        return min(self.kept, self._slots)

    def keep(self, bid_id: str, user_row: np.ndarray, cand_row: np.ndarray) -> None:
        """Remember the row a bid was scored on (its user block with its own candidate columns)."""
        if self._rows is None:
            return
        seq = int(bid_id[:12], 16)  # the ledger's sequence number (see BidLedger)
        slot = seq % self._slots
        row = self._rows[slot]
        row[:] = user_row[:features.USED]
        row[features.CANDIDATE_COLUMNS] = cand_row
        self._seq[slot] = seq
        self.kept += 1

    def take(self, bid_id: str) -> np.ndarray | None:
        """The bid's row as it was scored, or None when it is no longer (or never was) kept."""
        if self._rows is None:
            return None
        try:
            seq = int(bid_id[:12], 16)
        except ValueError:
            return None
        slot = seq % self._slots
        if self._seq[slot] != seq:
            self.evictions += 1
            return None
        return self._rows[slot].copy()
